package net

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio/virtiotest"
)

// batch is how many chains the benchmark driver keeps in flight.
const batch = 128

// BenchmarkTxSmallFrames measures guest → tap packets per second with
// 60-byte frames, as a driver posting batches would see it. The frames are
// addressed to another host, so the tap's kernel side drops them cheaply
// and the number is the device's own cost.
func BenchmarkTxSmallFrames(b *testing.B) {
	h := newHostNet(b)
	_, hs := newDevice(b, h, 0)
	tx := hs.Queue(TxQueue)
	other := []byte{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}
	pkt := append(hdrBytes(header{}), udpFrame(other, 9, make([]byte, 18), csumFull)...)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(batch, b.N-sent)
		for range n {
			tx.Post(virtiotest.Out(pkt))
		}
		tx.Kick()
		for range n {
			tx.WaitUsed()
		}
		sent += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkRxSmallFrames measures host → guest packets per second with
// small UDP datagrams (60-byte frames) sent by a host socket, in windows
// the guest has buffers for, so none are dropped.
func BenchmarkRxSmallFrames(b *testing.B) {
	h := newHostNet(b)
	_, hs := newDevice(b, h, 0)
	rx := hs.Queue(RxQueue)
	const port = 6000
	payload := make([]byte, 18)
	postRx(rx, batch, 1526)
	b.ReportAllocs()
	b.ResetTimer()
	for got := 0; got < b.N; {
		n := min(batch, b.N-got)
		for range n {
			h.send(b, port, payload)
		}
		for range n {
			recvRx(b, rx, true, port)
			rx.Post(virtiotest.In(1526))
		}
		rx.Kick()
		got += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkTapWriteBaseline is the floor under BenchmarkTxSmallFrames: the
// same frame written to the tap in a loop, with no guest or device.
func BenchmarkTapWriteBaseline(b *testing.B) {
	h := newHostNet(b)
	other := []byte{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}
	pkt := append(hdrBytes(header{}), udpFrame(other, 9, make([]byte, 18), csumFull)...)
	rc, err := h.tap.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	rc.Control(func(fd uintptr) {
		for range b.N {
			if _, err := unix.Write(int(fd), pkt); err != nil {
				b.Fatalf("write tap: %v", err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}
