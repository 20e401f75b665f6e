// vnetd's kernel fast path (see daemon/src/fastpath.rs for the rules it follows).
//
// The daemon decides; the kernel only repeats decisions the daemon has already made and
// written into two maps, one entry per (port, source MAC, destination MAC):
// - ENCAP: a frame from local interface `ifindex` whose only destination is a UDP link is
//   wrapped in IPv4/UDP and the link header, exactly as the daemon would send it, and sent
//   out of the underlay interface;
// - DECAP: a frame arriving over a UDP link from (saddr, sport) whose only destination is a
//   local interface is unwrapped and sent out of that interface.
// Anything else (no entry, an entry not yet armed, a packet this code does not understand)
// goes on to the daemon unchanged. `sock_filter`, on the daemon's packet socket, keeps from
// the daemon exactly the frames `tc_encap` will send, so no frame is sent twice.

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// "Not mine": let the next program on this hook (another daemon's, another tool's) look at
// the packet; TC_ACT_OK would end the chain (TCX_PASS).
#define TC_NEXT TC_ACT_UNSPEC

#define LINK_MAGIC 0x56
#define KIND_FRAME 1
// Outer IPv4 + UDP + the 4-byte link header + the inner Ethernet header: what the
// encapsulation inserts after the Ethernet header the frame already has.
#define OUTER (sizeof(struct iphdr) + sizeof(struct udphdr) + 4)
#define GROW (OUTER + ETH_HLEN)

// Not in older uapi headers (Linux 6.3+).
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

struct encap_key {
	__u32 ifindex;
	__u8 src[ETH_ALEN];
	__u8 dst[ETH_ALEN];
};

struct encap_val {
	__u32 saddr;    // network order
	__u32 daddr;    // network order
	__u16 sport;    // network order
	__u16 dport;    // network order
	__u32 oif;      // the underlay interface the daemon's own datagrams leave by
	__u8 hop;       // hop limit written into the link header
	__u8 armed;     // 0 until the daemon has sent the first frame itself
	__u16 max_len;  // the largest frame whose datagram fits the underlay's MTU
	__u32 gen;      // valid while CONFIG's generation is this

	__u64 frames;
	__u64 bytes;
	__u64 lost; // frames this program gave up on after the socket filter left them to it
};

struct decap_key {
	__u32 saddr; // network order
	__u16 sport; // network order
	__u8 src[ETH_ALEN];
	__u8 dst[ETH_ALEN];
	__u16 pad;
};

struct decap_val {
	__u32 ifindex;
	__u32 gen;
	__u64 frames;
	__u64 bytes;
};

struct config {
	__u32 addr; // the daemon's link address, network order
	__u16 port; // network order
	__u16 pad;
	// Bumped by the daemon on every table or link change: older entries are void at once.
	__u32 gen;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct encap_key);
	__type(value, struct encap_val);
} ENCAP SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct decap_key);
	__type(value, struct decap_val);
} DECAP SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} CONFIG SEC(".maps");

static __always_inline struct config *config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&CONFIG, &zero);
}

static __always_inline struct encap_val *encap_entry(struct __sk_buff *skb)
{
	struct config *cfg = config();
	if (!cfg)
		return 0;
	struct encap_key k = {};
	if (bpf_skb_load_bytes(skb, 0, k.dst, ETH_ALEN) < 0)
		return 0;
	if (bpf_skb_load_bytes(skb, ETH_ALEN, k.src, ETH_ALEN) < 0)
		return 0;
	k.ifindex = skb->ifindex;
	struct encap_val *v = bpf_map_lookup_elem(&ENCAP, &k);
	if (v && v->gen != cfg->gen)
		return 0;
	return v;
}

// Is this a frame tc_encap sends? Asked by both programs, so that each frame goes one way:
// armed entries only; whole frames only (a TSO/GSO super-frame could reach a daemon without
// a kernel fast path in one piece, which its UDP socket cannot take apart), whose datagram
// fits the underlay; IP only (bpf_skb_adjust_room refuses anything else).
static __always_inline int ours(struct __sk_buff *skb, struct encap_val *v)
{
	return v->armed && skb->gso_size == 0 && skb->len <= v->max_len &&
	       (skb->protocol == bpf_htons(ETH_P_IP) || skb->protocol == bpf_htons(ETH_P_IPV6));
}

// On the daemon's packet socket: 0 drops the frame (tc_encap sends it), else keep it.
SEC("socket")
int sock_filter(struct __sk_buff *skb)
{
	struct encap_val *v = encap_entry(skb);
	if (v && ours(skb, v))
		return 0;
	return skb->len;
}

SEC("classifier")
int tc_encap(struct __sk_buff *skb)
{
	struct encap_val *v = encap_entry(skb);
	if (!v)
		return TC_NEXT;
	if (!v->armed) {
		// The daemon sends this first frame (its socket kept it), which also has the
		// kernel resolve the peer's next hop; the following ones are ours.
		v->armed = 1;
		return TC_NEXT;
	}
	if (!ours(skb, v))
		return TC_NEXT;
	__u32 len = skb->len;
	__u8 inner[ETH_HLEN];
	if (bpf_skb_load_bytes(skb, 0, inner, ETH_HLEN) < 0)
		goto lost;
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
		      BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
		      BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	if (bpf_skb_adjust_room(skb, GROW, BPF_ADJ_ROOM_MAC, flags) < 0)
		goto lost;

	// bpf_redirect_neigh replaces this header with the route's next hop; it only has to be
	// unicast.
	struct ethhdr eth = {};
	eth.h_dest[0] = 0x02;
	eth.h_proto = bpf_htons(ETH_P_IP);

	struct iphdr ip = {};
	ip.version = 4;
	ip.ihl = 5;
	ip.tot_len = bpf_htons(len + OUTER);
	ip.frag_off = bpf_htons(0x4000); // DF, as the daemon's own UDP socket sends
	ip.ttl = 64;
	ip.protocol = IPPROTO_UDP;
	ip.saddr = v->saddr;
	ip.daddr = v->daddr;
	__u32 sum = 0;
	__u16 *w = (__u16 *)&ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip.check = ~sum & 0xffff;

	struct udphdr udp = {};
	udp.source = v->sport;
	udp.dest = v->dport;
	udp.len = bpf_htons(len + sizeof(struct udphdr) + 4);
	udp.check = 0; // optional over IPv4; each GSO segment gets the same header

	__u8 link[4] = {LINK_MAGIC, KIND_FRAME, v->hop, 0};

	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(ip), &udp, sizeof(udp), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(ip) + sizeof(udp), link, 4, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + OUTER, inner, ETH_HLEN, 0) < 0)
		goto lost;
	__sync_fetch_and_add(&v->frames, 1);
	__sync_fetch_and_add(&v->bytes, len);
	// Routed and addressed by the kernel like the daemon's own datagrams (no forwarding
	// needs to be enabled, unlike bpf_fib_lookup).
	return bpf_redirect_neigh(v->oif, 0, 0, 0);
lost:
	// Disarm: the daemon takes the next frames again (this one is lost, as on a busy link).
	v->armed = 0;
	__sync_fetch_and_add(&v->lost, 1);
	return TC_ACT_SHOT;
}

SEC("classifier")
int tc_decap(struct __sk_buff *skb)
{
	struct config *cfg = config();
	if (!cfg || cfg->port == 0)
		return TC_NEXT;
	struct iphdr ip;
	struct udphdr udp;
	__u8 link[4];
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_NEXT;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return TC_NEXT;
	if (ip.ihl != 5 || ip.protocol != IPPROTO_UDP || ip.daddr != cfg->addr ||
	    (ip.frag_off & bpf_htons(0x3fff)))
		return TC_NEXT;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &udp, sizeof(udp)) < 0 ||
	    udp.dest != cfg->port)
		return TC_NEXT;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip) + sizeof(udp), link, 4) < 0 ||
	    link[0] != LINK_MAGIC || link[1] != KIND_FRAME || link[3] != 0)
		return TC_NEXT;
	__u8 inner[ETH_HLEN];
	if (bpf_skb_load_bytes(skb, ETH_HLEN + OUTER, inner, ETH_HLEN) < 0)
		return TC_NEXT;
	struct decap_key k = {};
	k.saddr = ip.saddr;
	k.sport = udp.source;
	__builtin_memcpy(k.dst, inner, ETH_ALEN);
	__builtin_memcpy(k.src, inner + ETH_ALEN, ETH_ALEN);
	struct decap_val *v = bpf_map_lookup_elem(&DECAP, &k);
	if (!v || v->gen != cfg->gen)
		return TC_NEXT;
	// What tc_encap sends is IPv4 or IPv6 inside; anything else is the daemon's.
	__u16 inner_proto = ((__u16)inner[12] << 8) | inner[13];
	__u64 l3;
	if (inner_proto == ETH_P_IP)
		l3 = BPF_F_ADJ_ROOM_DECAP_L3_IPV4;
	else if (inner_proto == ETH_P_IPV6)
		l3 = BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
	else
		return TC_NEXT;
	if (bpf_skb_adjust_room(skb, -(__s32)GROW, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | l3) < 0)
		return TC_NEXT;
	if (bpf_skb_store_bytes(skb, 0, inner, ETH_HLEN, 0) < 0)
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&v->frames, 1);
	__sync_fetch_and_add(&v->bytes, skb->len);
	return bpf_redirect(v->ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
