/*
 * virtio-net.c: with no offloads negotiated (virtio 1.2 §5.1), broadcasts a
 * UDP datagram carrying a marker from ip= (default 198.18.0.2) to port=
 * (default 5555) about once a second, answers ARP requests for ip=, and
 * prints the payload of the first UDP datagram that arrives for port=.
 * Checksums are computed and checked in full (RFC 791, RFC 768).
 * flood=N (default 0: off) instead sends N small broadcast datagrams to
 * port= back to back and reports the TSC ticks taken (packet-rate benchmark).
 */
#include "virtio.h"

const char guest_name[] = "virtio-net";

#define NET_F_MAC (1UL << 5)

/* struct virtio_net_hdr with VERSION_1: always 12 bytes (§5.1.6). */
#define NET_HDR 12
#define FRAME_MAX 1514
#define RX_BUF 2048
#define NRX 16

static struct vdev dev;
static struct vq rxq, txq;
static u8 rx_bufs[NRX][RX_BUF];
static int rx_by_head[VQ_MAX_SIZE];
static u8 tx_buf[NET_HDR + FRAME_MAX];
static int tx_busy;

static u8 mac[6];
static u8 ip[4];
static u16 port;

static void put16(u8 *p, u16 v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static u16 get16(const u8 *p)
{
	return p[0] << 8 | p[1];
}

/* csum_add folds n bytes into a ones' complement sum of big-endian words. */
static u32 csum_add(u32 sum, const u8 *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += get16(p + i);
	if (n & 1)
		sum += p[n - 1] << 8;
	return sum;
}

static u16 csum_fold(u32 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* udp_csum covers the IPv4 pseudo-header and the UDP header and data. */
static u16 udp_csum(const u8 *iph, const u8 *udp, u16 udp_len)
{
	u8 pseudo[12];
	memcpy(pseudo, iph + 12, 8);	/* source and destination addresses */
	pseudo[8] = 0;
	pseudo[9] = 17;
	put16(pseudo + 10, udp_len);
	return csum_fold(csum_add(csum_add(0, pseudo, 12), udp, udp_len));
}

static void format_mac(char *out, const u8 *m)
{
	format(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* tx_frame waits for the previous frame to be sent and returns the buffer
 * for the next one (its Ethernet header onwards). */
static u8 *tx_frame(void)
{
	if (tx_busy) {
		u32 len;
		vq_wait(&txq, &len, "the previous frame to be sent");
		tx_busy = 0;
	}
	return tx_buf + NET_HDR;
}

/* transmit sends the frame tx_frame returned. */
static void transmit(u32 frame_len)
{
	memset(tx_buf, 0, NET_HDR);	/* no offloads: flags 0, GSO_NONE */
	if (frame_len < 60) {	/* Ethernet minimum, without the FCS */
		memset(tx_buf + NET_HDR + frame_len, 0, 60 - frame_len);
		frame_len = 60;
	}
	struct vbuf b = { tx_buf, NET_HDR + frame_len, 0 };
	vq_add(&txq, &b, 1);
	vq_kick(&txq);
	tx_busy = 1;
}

/* udp_broadcast fills eth with a broadcast UDP datagram from ip:port to
 * port carrying text; returns the frame's length. */
static u32 udp_broadcast(u8 *eth, const char *text, u16 id)
{
	u8 *iph = eth + 14, *udp = iph + 20, *data = udp + 8;
	u16 dlen = strlen(text);
	memcpy(data, text, dlen);
	memset(eth, 0xff, 6);
	memcpy(eth + 6, mac, 6);
	put16(eth + 12, 0x0800);
	memset(iph, 0, 20);
	iph[0] = 0x45;
	put16(iph + 2, 20 + 8 + dlen);
	put16(iph + 4, id);	/* identification */
	iph[8] = 64;
	iph[9] = 17;
	memcpy(iph + 12, ip, 4);
	memset(iph + 16, 0xff, 4);
	put16(iph + 10, csum_fold(csum_add(0, iph, 20)));
	put16(udp, port);
	put16(udp + 2, port);
	put16(udp + 4, 8 + dlen);
	put16(udp + 6, 0);
	u16 c = udp_csum(iph, udp, 8 + dlen);
	put16(udp + 6, c ? c : 0xffff);	/* RFC 768: 0 means none */
	return 14 + 20 + 8 + dlen;
}

static void send_marker(u32 n)
{
	u8 *eth = tx_frame();
	char m[18], text[256];
	format_mac(m, mac);
	format(text, sizeof(text), "sietch virtio-net marker %u from %s", n, m);
	transmit(udp_broadcast(eth, text, n));
}

/*
 * flood sends n copies of one small broadcast datagram as fast as the tx
 * queue takes them (all chains share one read-only buffer) and prints the
 * TSC ticks it took; the host counts what reaches the tap.
 */
static void flood(u64 n)
{
	static u8 frame[NET_HDR + FRAME_MAX];
	memset(frame, 0, NET_HDR);
	u32 len = udp_broadcast(frame + NET_HDR, "sietch virtio-net flood", 0);
	if (len < 60) {
		memset(frame + NET_HDR + len, 0, 60 - len);
		len = 60;
	}
	struct vbuf b = { frame, NET_HDR + len, 0 };
	print("virtio-net: flood begin\n");
	u64 t0 = rdtsc(), sent = 0, done = 0;
	while (done < n) {
		int added = 0;
		while (sent < n && vq_free_count(&txq) >= 1) {
			vq_add(&txq, &b, 1);
			sent++, added++;
		}
		if (added)
			vq_kick(&txq);
		u32 l;
		vq_wait(&txq, &l, "flood frames to be sent");
		done++;
		u16 id;
		while (vq_poll(&txq, &id, &l))
			done++;
	}
	printf("virtio-net: flood end: %lu frames, %lu ticks\n", n, rdtsc() - t0);
}

/* arp_reply answers a request for our address (RFC 826). */
static void arp_reply(const u8 *req)
{
	const u8 *arp = req + 14;
	if (get16(arp) != 1 || get16(arp + 2) != 0x0800 || arp[4] != 6 || arp[5] != 4 || get16(arp + 6) != 1)
		return;
	if (memcmp(arp + 24, ip, 4))
		return;
	u8 *eth = tx_frame(), *a = eth + 14;
	memcpy(eth, arp + 8, 6);
	memcpy(eth + 6, mac, 6);
	put16(eth + 12, 0x0806);
	memcpy(a, arp, 6);	/* htype, ptype, hlen, plen */
	put16(a + 6, 2);	/* reply */
	memcpy(a + 8, mac, 6);
	memcpy(a + 14, ip, 4);
	memcpy(a + 18, arp + 8, 10);	/* requester's MAC and IP */
	transmit(14 + 28);
	print("virtio-net: answered ARP\n");
}

/* receive handles one frame; returns 1 when it was the datagram we wait for. */
static int receive(const u8 *f, u32 n)
{
	if (n < 14)
		return 0;
	u16 type = get16(f + 12);
	if (type == 0x0806 && n >= 14 + 28) {
		arp_reply(f);
		return 0;
	}
	if (type != 0x0800 || n < 14 + 20 + 8)
		return 0;
	const u8 *iph = f + 14;
	u32 ihl = (iph[0] & 15) * 4;
	if (iph[0] >> 4 != 4 || ihl < 20 || iph[9] != 17 || n < 14 + ihl + 8)
		return 0;
	const u8 *udp = iph + ihl;
	if (get16(udp + 2) != port)
		return 0;
	if (memcmp(iph + 16, ip, 4) && memcmp(iph + 16, "\xff\xff\xff\xff", 4))
		return 0;
	if (csum_fold(csum_add(0, iph, ihl)) != 0)
		fail("received IPv4 header with a bad checksum");
	u16 ulen = get16(udp + 4);
	if (ulen < 8 || 14 + ihl + ulen > n || get16(iph + 2) < ihl + ulen)
		fail("received UDP length %u does not fit the %u-byte frame", ulen, n);
	if (get16(udp + 6) && udp_csum(iph, udp, ulen) != 0)
		fail("received UDP datagram with a bad checksum");
	char text[256];
	u32 dlen = (u32)ulen - 8;
	if (dlen > sizeof(text) - 1)
		dlen = sizeof(text) - 1;
	memcpy(text, udp + 8, dlen);
	text[dlen] = 0;
	printf("virtio-net: received from %u.%u.%u.%u:%u: %s\n", iph[12], iph[13], iph[14], iph[15],
	       get16(udp), text);
	return 1;
}

static void parse_ip(const char *s)
{
	for (int i = 0; i < 4; i++) {
		u32 v = 0;
		int digits = 0;
		while (*s >= '0' && *s <= '9' && digits < 4)
			v = v * 10 + (*s++ - '0'), digits++;
		if (!digits || v > 255 || (i < 3 && *s++ != '.'))
			fail("ip= wants a dotted IPv4 address");
		ip[i] = v;
	}
	if (*s)
		fail("ip= wants a dotted IPv4 address");
}

int main(void)
{
	char ipstr[32] = "198.18.0.2";
	cmdline_get("ip", ipstr, sizeof(ipstr));
	parse_ip(ipstr);
	port = cmdline_u64("port", 5555);
	u64 tries = cmdline_u64("tries", 30), nflood = cmdline_u64("flood", 0);
	printf("virtio-net: start ip=%s port=%u\n", ipstr, port);

	virtio_must_find(&dev, VIRTIO_ID_NET, "virtio-net");
	u64 f = virtio_start(&dev, NET_F_MAC);
	virtio_queue(&dev, &rxq, 0, NRX);
	virtio_queue(&dev, &txq, 1, nflood ? 0 : 4);
	for (int i = 0; i < NRX && i < rxq.size; i++) {
		struct vbuf b = { rx_bufs[i], RX_BUF, 1 };
		rx_by_head[vq_add(&rxq, &b, 1)] = i;
	}
	virtio_ready(&dev);
	vq_kick(&rxq);
	if (!(f & NET_F_MAC))
		fail("the device offers no MAC address (VIRTIO_NET_F_MAC); features 0x%lx", dev.device_features);
	for (int i = 0; i < 6; i++)
		mac[i] = virtio_config8(&dev, i);
	char m[18];
	format_mac(m, mac);
	printf("virtio-net: slot %d, mac %s\n", dev.slot, m);
	if (nflood) {
		flood(nflood);
		print("virtio-net: ok\n");
		return 0;
	}

	/* Resend about once a second: the host may not be listening yet. */
	u64 period = WAIT_TICKS / 10;
	for (u32 sent = 0; sent < tries; sent++) {
		send_marker(sent);
		u64 t0 = rdtsc();
		while (rdtsc() - t0 < period) {
			u16 id;
			u32 len;
			if (tx_busy && vq_poll(&txq, &id, &len))
				tx_busy = 0;
			if (!vq_poll(&rxq, &id, &len)) {
				cpu_relax();
				continue;
			}
			int i = rx_by_head[id];
			if (len < NET_HDR || len > RX_BUF)
				fail("rx: device wrote %u bytes into a %d-byte buffer", len, RX_BUF);
			int done = receive(rx_bufs[i] + NET_HDR, len - NET_HDR);
			struct vbuf b = { rx_bufs[i], RX_BUF, 1 };
			rx_by_head[vq_add(&rxq, &b, 1)] = i;
			vq_kick(&rxq);
			if (done) {
				printf("virtio-net: sent %u markers\n", sent + 1);
				print("virtio-net: ok\n");
				return 0;
			}
		}
	}
	fail("no UDP datagram for port %u after %lu markers (~1 s apart)", port, tries);
}
