/*
 * virtio-vsock.c: stream sockets over virtio-vsock (virtio 1.2 §5.10), both
 * ways at once from one polling loop:
 *  - listen=1234 (0: off): accepts streams= host connections (default 1),
 *    echoes what each sends back upper-cased until the host shuts it down;
 *  - sink=P (default 0: off): accepts sinks= connections (default 1) and
 *    only reads, printing the FNV-1a checksum of what each stream carried:
 *    the host can send no more than BUF_ALLOC ahead of our CREDIT_UPDATEs;
 *  - connect=5678 (0: off): connects to the host, sends "hello from cid N\n",
 *    prints the line the host answers, then sends vsock_bytes= bytes of a
 *    seeded pattern (seed=, default 1) and prints their FNV-1a checksum.
 * Credit (§5.10.6.3): each stream advertises BUF_ALLOC bytes; bytes count as
 * consumed when they are echoed (or read, outbound), and fwd_cnt travels in
 * every header plus CREDIT_UPDATEs when nothing else carries it.
 */
#include "virtio.h"

const char guest_name[] = "virtio-vsock";

#define HOST_CID 2
#define TYPE_STREAM 1
enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE, OP_CREDIT_REQUEST };
#define SHUT_RCV 1
#define SHUT_SEND 2
#define VSOCK_F_STREAM (1UL << 0)

struct hdr {
	u64 src_cid, dst_cid;
	u32 src_port, dst_port, len;
	u16 type, op;
	u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

#define HDR 44
#define PAYLOAD 4096
#define NRX 64
#define NTX 32
#define TX_RESERVE 8		/* tx slots only control packets may take */
#define BUF_ALLOC 16384		/* per stream; a power of two (ring index mask) */
#define MAX_CONNS 8
#define LOCAL_PORT 49152	/* our end of the outbound stream */

enum { C_FREE, C_CONNECTING, C_OPEN, C_CLOSING };

struct conn {
	int state, outbound, sink;
	u32 lport, pport;
	/* Receive side: what the peer sent and we have not consumed yet. */
	u32 rhead, rlen, fwd_cnt, fwd_told;
	u64 received;
	u32 peer_shut;
	/* Send side (§5.10.6.3.1): the peer's buffer and how much we sent. */
	u32 peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	u64 sent;
	u64 rx_sum;	/* sink streams */
	/* Outbound only. */
	int greeted, have_reply, shut_sent;
	u32 line_len;
	char line[256];
	u64 bulk_total, bulk_left, bulk_sum;
};

static struct vdev dev;
static struct vq rxq, txq, evq;
static u64 cid;

static u8 rx_bufs[NRX][HDR + PAYLOAD] NOINIT;
static struct tx_slot {
	struct hdr hdr;
	u8 data[PAYLOAD];
	int busy;
} tx_slots[NTX];
static int tx_by_head[VQ_MAX_SIZE];
static int rx_by_head[VQ_MAX_SIZE];
static u64 events[4];
static u16 ev_head[4];	/* the event buffer each head id stands for */

static struct conn conns[MAX_CONNS];
static u8 rings[MAX_CONNS][BUF_ALLOC] NOINIT;
static int tx_busy, streams_done, sinks_done, out_closed;
static u32 listen_port, sink_port;
static u64 last_progress;

/* The outbound byte pattern: xorshift64 words, little-endian bytes. */
static u64 pat_state, pat_word;
static int pat_pos = 8;

static u8 pat_byte(void)
{
	if (pat_pos == 8) {
		pat_word = xorshift64(&pat_state);
		pat_pos = 0;
	}
	return pat_word >> (8 * pat_pos++);
}

static void rx_add(int i)
{
	struct vbuf b = { rx_bufs[i], HDR + PAYLOAD, 1 };
	rx_by_head[vq_add(&rxq, &b, 1)] = i;
}

static void tx_reclaim(void)
{
	u16 id;
	while (vq_poll(&txq, &id, 0)) {
		tx_slots[tx_by_head[id]].busy = 0;
		tx_busy--;
		last_progress = rdtsc();
	}
}

/* tx_get returns a free slot, leaving TX_RESERVE for control packets. */
static struct tx_slot *tx_get(int control)
{
	tx_reclaim();
	if (NTX - tx_busy <= (control ? 0 : TX_RESERVE)) {
		if (!control)
			return 0;
		u64 t0 = rdtsc();
		while (tx_busy == NTX) {
			if (rdtsc() - t0 > WAIT_TICKS)
				fail("tx queue: no slot completed in ~10 s (%d in flight)", tx_busy);
			cpu_relax();
			tx_reclaim();
		}
	}
	for (int i = 0; i < NTX; i++)
		if (!tx_slots[i].busy) {
			tx_slots[i].busy = 1;
			tx_busy++;
			tx_slots[i].hdr.len = 0;
			return &tx_slots[i];
		}
	fail("tx slot accounting is off (%d busy)", tx_busy);
}

/* tx_send fills in the header for c and queues s; len bytes of s->data go too. */
static void tx_send(struct tx_slot *s, struct conn *c, u16 op, u32 flags, u32 len)
{
	s->hdr = (struct hdr){
		.src_cid = cid, .dst_cid = HOST_CID, .src_port = c->lport, .dst_port = c->pport,
		.len = len, .type = TYPE_STREAM, .op = op, .flags = flags,
		.buf_alloc = BUF_ALLOC, .fwd_cnt = c->fwd_cnt,
	};
	c->fwd_told = c->fwd_cnt;
	c->tx_cnt += len;
	c->sent += len;
	struct vbuf b[2] = { { &s->hdr, HDR, 0 }, { s->data, len, 0 } };
	tx_by_head[vq_add(&txq, b, len ? 2 : 1)] = s - tx_slots;
	vq_kick(&txq);
}

static void send_ctl(struct conn *c, u16 op, u32 flags)
{
	tx_send(tx_get(1), c, op, flags, 0);
}

/* send_rst_to answers a packet for no connection of ours (§5.10.6.4). */
static void send_rst_to(const struct hdr *h)
{
	struct conn tmp = { .lport = h->dst_port, .pport = h->src_port };
	send_ctl(&tmp, OP_RST, 0);
}

/* peer_free is how many bytes the peer can take now (§5.10.6.3.1). */
static u32 peer_free(const struct conn *c)
{
	return c->peer_buf_alloc - (c->tx_cnt - c->peer_fwd_cnt);
}

static struct conn *find(u32 lport, u32 pport)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].state != C_FREE && conns[i].lport == lport && conns[i].pport == pport)
			return &conns[i];
	return 0;
}

static struct conn *alloc_conn(void)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].state == C_FREE) {
			memset(&conns[i], 0, sizeof(conns[i]));
			return &conns[i];
		}
	return 0;
}

static void close_conn(struct conn *c, const char *how)
{
	if (c->sink) {
		sinks_done++;
		printf("virtio-vsock: sink %u<-%u closed (%s): %lu bytes, checksum 0x%016lx\n", c->lport, c->pport,
		       how, c->received, c->rx_sum);
	} else if (!c->outbound) {
		streams_done++;
		printf("virtio-vsock: stream %u<-%u closed (%s): %lu bytes in, %lu echoed\n", c->lport, c->pport,
		       how, c->received, c->sent);
	} else {
		if (c->state != C_CLOSING)
			fail("connection to host port %u %s after %lu of %lu bytes, before the guest finished",
			     c->pport, how, c->sent, c->sent + c->bulk_left);
		printf("virtio-vsock: connection to %u closed (%s)\n", c->pport, how);
		out_closed = 1;
	}
	c->state = C_FREE;
}

/*
 * transport_event handles an event-queue buffer: TRANSPORT_RESET (id 0) is
 * what a restored VM gets (§5.10.6.6): every stream is gone, and the CID
 * may have changed. Streams the host had open are dropped without counting
 * as done; an outbound stream cannot survive, so that fails the guest.
 */
static void transport_event(u16 id, u32 len)
{
	int i = 0;
	while (i < 4 && ev_head[i] != id)
		i++;
	if (i == 4 || len < 4 || (u32)events[i] != 0)
		fail("event queue: head %u, %u bytes, event id %u: not a transport reset", id, len,
		     i < 4 ? (u32)events[i] : 0);
	for (int c = 0; c < MAX_CONNS; c++) {
		if (conns[c].state == C_FREE)
			continue;
		if (conns[c].outbound)
			fail("transport reset while connected to host port %u", conns[c].pport);
		conns[c].state = C_FREE;
	}
	cid = virtio_config64(&dev, 0) & 0xffffffff;
	printf("virtio-vsock: transport reset, cid %lu\n", cid);
	struct vbuf b = { &events[i], 8, 1 };
	ev_head[i] = vq_add(&evq, &b, 1);
	vq_kick(&evq);
}

static void consume(struct conn *c, const u8 *p, u32 n)
{
	if (c->sink) {
		/* The host knows only the fwd_cnt we last sent. */
		if (c->received - c->fwd_told > BUF_ALLOC)
			fail("sink %u<-%u: host has %lu bytes in flight, beyond our %d-byte credit", c->lport,
			     c->pport, c->received - c->fwd_told, BUF_ALLOC);
		c->rx_sum = fnv1a(c->rx_sum, p, n);
		c->fwd_cnt += n;
		return;
	}
	if (c->outbound) {
		for (u32 i = 0; i < n && !c->have_reply; i++) {
			if (p[i] == '\n') {
				c->line[c->line_len] = 0;
				c->have_reply = 1;
				printf("virtio-vsock: host says: %s\n", c->line);
			} else if (c->line_len + 1 < sizeof(c->line)) {
				c->line[c->line_len++] = p[i];
			}
		}
		c->fwd_cnt += n;
		return;
	}
	if (n > BUF_ALLOC - c->rlen)
		fail("stream %u<-%u: host sent %u bytes with %u buffered of %u: it ignored our credit",
		     c->lport, c->pport, n, c->rlen, BUF_ALLOC);
	for (u32 i = 0; i < n; i++)
		rings[c - conns][(c->rhead + c->rlen + i) % BUF_ALLOC] = p[i];
	c->rlen += n;
}

static void handle(const u8 *buf, u32 used_len)
{
	struct hdr h;
	if (used_len < HDR)
		fail("rx: device wrote %u bytes, less than a %d-byte header", used_len, HDR);
	memcpy(&h, buf, HDR);
	if (h.len > used_len - HDR)
		fail("rx: header says len %u, device wrote %u bytes of payload", h.len, used_len - HDR);
	if (h.type != TYPE_STREAM || h.dst_cid != cid || h.src_cid != HOST_CID)
		fail("rx: unexpected packet type %u op %u from cid %lu to cid %lu", h.type, h.op, h.src_cid, h.dst_cid);
	struct conn *c = find(h.dst_port, h.src_port);
	if (!c) {
		int sink = sink_port && h.dst_port == sink_port;
		if (h.op == OP_REQUEST && ((listen_port && h.dst_port == listen_port) || sink) && (c = alloc_conn())) {
			*c = (struct conn){ .state = C_OPEN, .sink = sink, .lport = h.dst_port, .pport = h.src_port,
					    .peer_buf_alloc = h.buf_alloc, .peer_fwd_cnt = h.fwd_cnt,
					    .rx_sum = FNV_OFFSET };
			send_ctl(c, OP_RESPONSE, 0);
			printf("virtio-vsock: accepted %u<-%u\n", c->lport, c->pport);
		} else if (h.op != OP_RST) {
			send_rst_to(&h);
		}
		return;
	}
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case OP_RESPONSE:
		if (c->state != C_CONNECTING)
			fail("RESPONSE on an open stream %u->%u", c->lport, c->pport);
		c->state = C_OPEN;
		printf("virtio-vsock: connected to host port %u\n", c->pport);
		break;
	case OP_RST:
		if (c->state == C_CONNECTING)
			fail("host refused the connection to port %u (RST): is anything listening on <uds>_%u?",
			     c->pport, c->pport);
		close_conn(c, c->state == C_CLOSING ? "shut down" : "reset by host");
		break;
	case OP_SHUTDOWN:
		c->peer_shut |= h.flags;
		if (c->state == C_CLOSING) {	/* both sides shut: we answer RST */
			send_ctl(c, OP_RST, 0);
			close_conn(c, "shut down");
		}
		break;
	case OP_RW:
		if (c->state == C_CONNECTING)
			fail("data before RESPONSE on %u->%u", c->lport, c->pport);
		c->received += h.len;
		consume(c, buf + HDR, h.len);
		break;
	case OP_CREDIT_UPDATE:
		break;
	case OP_CREDIT_REQUEST:
		send_ctl(c, OP_CREDIT_UPDATE, 0);
		break;
	case OP_REQUEST:
		send_ctl(c, OP_RST, 0);	/* a second REQUEST for a live stream */
		close_conn(c, "duplicate request");
		break;
	default:
		fail("rx: unknown op %u on %u<-%u", h.op, c->lport, c->pport);
	}
}

/* pump sends what each stream can send now; returns 1 if it sent anything. */
static int pump(struct conn *c)
{
	struct tx_slot *s;
	if (c->state != C_OPEN)
		return 0;
	if (!c->outbound) {
		if (c->rlen && peer_free(c) && (s = tx_get(0))) {
			u32 n = c->rlen;
			if (n > PAYLOAD)
				n = PAYLOAD;
			if (n > peer_free(c))
				n = peer_free(c);
			u8 *ring = rings[c - conns];
			for (u32 i = 0; i < n; i++) {
				u8 b = ring[(c->rhead + i) % BUF_ALLOC];
				s->data[i] = b >= 'a' && b <= 'z' ? b - 32 : b;
			}
			c->rhead = (c->rhead + n) % BUF_ALLOC;
			c->rlen -= n;
			c->fwd_cnt += n;
			tx_send(s, c, OP_RW, 0, n);
			return 1;
		}
		if (!c->rlen && (c->peer_shut & SHUT_SEND)) {
			send_ctl(c, OP_RST, 0);
			close_conn(c, "host shut down");
			return 1;
		}
		if (c->peer_shut & SHUT_RCV) {
			send_ctl(c, OP_RST, 0);
			close_conn(c, "host stopped reading");
			return 1;
		}
	} else {
		if (!c->greeted && (s = tx_get(0))) {
			u32 n = format((char *)s->data, PAYLOAD, "hello from cid %lu\n", cid);
			if (n > peer_free(c))
				fail("host advertises %u bytes of credit, too little for the greeting", peer_free(c));
			c->greeted = 1;
			tx_send(s, c, OP_RW, 0, n);
			return 1;
		}
		if (c->have_reply && c->bulk_left && peer_free(c) && (s = tx_get(0))) {
			u32 n = c->bulk_left < PAYLOAD ? c->bulk_left : PAYLOAD;
			if (n > peer_free(c))
				n = peer_free(c);
			for (u32 i = 0; i < n; i++)
				s->data[i] = pat_byte();
			c->bulk_sum = fnv1a(c->bulk_sum, s->data, n);
			c->bulk_left -= n;
			tx_send(s, c, OP_RW, 0, n);
			return 1;
		}
		if (c->have_reply && !c->bulk_left && !c->shut_sent) {
			printf("virtio-vsock: sent %lu bytes, checksum 0x%016lx\n", c->bulk_total, c->bulk_sum);
			send_ctl(c, OP_SHUTDOWN, SHUT_RCV | SHUT_SEND);
			c->shut_sent = 1;
			c->state = C_CLOSING;
			return 1;
		}
		if (c->peer_shut && !c->shut_sent)
			fail("host shut the connection down (flags %u) before the guest finished sending", c->peer_shut);
	}
	/* Tell the peer about consumed bytes when no data packet did. */
	if (c->fwd_cnt - c->fwd_told >= BUF_ALLOC / 4) {
		send_ctl(c, OP_CREDIT_UPDATE, 0);
		return 1;
	}
	return 0;
}

int main(void)
{
	u64 listen = cmdline_u64("listen", 1234), streams = cmdline_u64("streams", 1);
	u64 port = cmdline_u64("connect", 5678), bulk = cmdline_u64("vsock_bytes", 0);
	u64 sink = cmdline_u64("sink", 0), sinks = cmdline_u64("sinks", 1);
	pat_state = cmdline_u64("seed", 1);
	printf("virtio-vsock: start listen=%lu streams=%lu sink=%lu connect=%lu vsock_bytes=%lu\n", listen,
	       streams, sink, port, bulk);
	if (!pat_state)
		fail("seed=0: xorshift needs a non-zero seed");
	if (listen > 0xffffffff || sink > 0xffffffff || port > 0xffffffff)
		fail("ports are 32-bit (listen=%lu sink=%lu connect=%lu)", listen, sink, port);
	if (!listen)
		streams = 0;
	if (!sink)
		sinks = 0;
	listen_port = listen;
	sink_port = sink;

	virtio_must_find(&dev, VIRTIO_ID_VSOCK, "virtio-vsock");
	virtio_start(&dev, VSOCK_F_STREAM);
	virtio_queue(&dev, &rxq, 0, NRX);
	virtio_queue(&dev, &txq, 1, 2 * NTX);
	virtio_queue(&dev, &evq, 2, 4);
	if (rxq.size < NRX || txq.size < 2 * NTX)
		fail("queues of %u/%u entries, want %d/%d", rxq.size, txq.size, NRX, 2 * NTX);
	for (int i = 0; i < NRX; i++)
		rx_add(i);
	for (int i = 0; i < evq.size && i < 4; i++) {
		struct vbuf b = { &events[i], 8, 1 };
		ev_head[i] = vq_add(&evq, &b, 1);
	}
	virtio_ready(&dev);
	vq_kick(&rxq);
	vq_kick(&evq);
	cid = virtio_config64(&dev, 0) & 0xffffffff;	/* upper 32 bits reserved (§5.10.4) */
	printf("virtio-vsock: slot %d, cid %lu\n", dev.slot, cid);

	if (port) {
		struct conn *out = alloc_conn();
		out->state = C_CONNECTING;
		out->outbound = 1;
		out->lport = LOCAL_PORT;
		out->pport = port;
		out->bulk_total = out->bulk_left = bulk;
		out->bulk_sum = FNV_OFFSET;
		send_ctl(out, OP_REQUEST, 0);
	}
	int out_done = !port;

	/* Bounded by inactivity: the host may take its time between streams. */
	last_progress = rdtsc();
	while (!out_done || (u64)streams_done < streams || (u64)sinks_done < sinks) {
		u16 id;
		u32 len;
		int n = 0;
		while (n < NRX && vq_poll(&rxq, &id, &len)) {
			int i = rx_by_head[id];
			handle(rx_bufs[i], len);
			rx_add(i);
			n++;
		}
		if (n) {
			vq_kick(&rxq);
			last_progress = rdtsc();
		}
		if (vq_poll(&evq, &id, &len))
			transport_event(id, len);
		tx_reclaim();
		for (int i = 0; i < MAX_CONNS; i++)
			while (conns[i].state != C_FREE && pump(&conns[i]))
				last_progress = rdtsc();
		out_done |= out_closed;
		if (rdtsc() - last_progress > 3 * WAIT_TICKS)
			fail("no vsock traffic for ~30 s: %lu of %lu streams and %lu of %lu sinks done, outbound %s",
			     (u64)streams_done, streams, (u64)sinks_done, sinks, out_done ? "done" : "not done");
		cpu_relax();
	}
	print("virtio-vsock: ok\n");
	return 0;
}
