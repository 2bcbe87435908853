package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkPrefix starts the name of every sandbox interface; the firewall's
// catch-all rules match it, so no other interface on the host may start
// with it.
const LinkPrefix = "sx"

// LinkName is the host interface name of sandbox id: "sx" and the id
// without its "sb-" (at most 15 bytes, IFNAMSIZ).
func LinkName(id string) (string, error) {
	name := LinkPrefix + strings.TrimPrefix(id, "sb-")
	if len(name) >= unix.IFNAMSIZ || len(name) <= len(LinkPrefix) {
		return "", fmt.Errorf("sandbox id %q makes no interface name of 3 to %d bytes", id, unix.IFNAMSIZ-1)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "", fmt.Errorf("sandbox id %q has %q, which an interface name should not", id, c)
		}
	}
	return name, nil
}

// CreateTAP makes the persistent TAP name (owned by root: only a root
// process or one with CAP_NET_ADMIN may attach to it; single queue, no
// packet information, vnet headers, as `vmm --net` opens it), puts gw on
// it and sets it up. A TAP of that name that is already there (sietchd
// restarted while its vmm ran) is kept and configured the same way.
func CreateTAP(name string, gw netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		if !errors.As(err, new(netlink.LinkNotFoundError)) {
			return fmt.Errorf("look up interface %s: %w", name, err)
		}
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR, Owner: 0, Group: 0}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("create TAP %s: %w (sietchd needs root or CAP_NET_ADMIN, and the tun module)", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("look up the new TAP %s: %w", name, err)
		}
	} else if link.Type() != "tuntap" {
		return fmt.Errorf("interface %s exists and is a %s, not a TAP; remove it (ip link del %s)", name, link.Type(), name)
	}
	if err := configureLink(link, gw); err != nil {
		DeleteLink(name)
		return err
	}
	return nil
}

// configureLink gives link the single address gw and sets it up.
func configureLink(link netlink.Link, gw netip.Prefix) error {
	name := link.Attrs().Name
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", name, err)
	}
	have := false
	for _, a := range addrs {
		p, ok := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		if ok && p == gw.Addr() && ones == gw.Bits() {
			have = true
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove address %v from %s: %w", a.IPNet, name, err)
		}
	}
	if !have {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.Addr().AsSlice(), Mask: net.CIDRMask(gw.Bits(), 32)}}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add address %v to %s: %w", gw, name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// DeleteLink removes the interface name; one that is not there is no error.
func DeleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up interface %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete interface %s: %w", name, err)
	}
	return nil
}

// DefaultUplink is the interface of the host's IPv4 default route: where
// sandboxes' traffic leaves the host.
func DefaultUplink() (string, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return "", fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.LinkIndex == 0 {
			continue
		}
		link, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			return "", fmt.Errorf("interface %d of the default route: %w", r.LinkIndex, err)
		}
		return link.Attrs().Name, nil
	}
	return "", fmt.Errorf("this host has no IPv4 default route, so sandboxes cannot reach the internet; name the uplink with --net-uplink")
}

// linksIn calls f once for each interface that holds an IPv4 address in
// prefix, with that address; f returns false to stop.
func linksIn(prefix netip.Prefix, f func(link netlink.Link, a netlink.Addr) (bool, error)) error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list the host's addresses: %w", err)
	}
	done := map[int]bool{}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok || done[a.LinkIndex] || !prefix.Contains(ip) {
			continue
		}
		done[a.LinkIndex] = true
		link, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			continue // gone meanwhile
		}
		if more, err := f(link, a); err != nil || !more {
			return err
		}
	}
	return nil
}

// clearSubnet makes sure no interface but name holds an address in gw's
// subnet, so that the host's route to the sandbox goes through name. A
// sandbox TAP that nothing has open (a leftover of a sietchd that died, or
// of another state directory, whose addresses the pool hands out again) is
// removed: its route would otherwise win and the new sandbox would be
// unreachable. Any other holder is an error naming it. It returns the
// interfaces removed.
func clearSubnet(name string, gw netip.Prefix) ([]string, error) {
	subnet := gw.Masked()
	var removed []string
	err := linksIn(subnet, func(link netlink.Link, a netlink.Addr) (bool, error) {
		other := link.Attrs().Name
		if other == name {
			return true, nil
		}
		if !staleTAP(link) {
			return false, fmt.Errorf("interface %s holds %v, in sandbox subnet %v: the host's route would bypass %s; "+
				"if another sietchd uses this pool, give one of them --net-pool off or another pool; otherwise remove it (ip link del %s)",
				other, a.IPNet, subnet, name, other)
		}
		if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			return false, fmt.Errorf("remove the stale sandbox interface %s (it holds %v, which sandbox interface %s needs): %w", other, a.IPNet, name, err)
		}
		removed = append(removed, other)
		return true, nil
	})
	return removed, err
}

// staleTAP reports whether link is a sandbox TAP that no process has open:
// a TAP has carrier only while a queue is attached (a vmm's net device).
func staleTAP(link netlink.Link) bool {
	return strings.HasPrefix(link.Attrs().Name, LinkPrefix) && link.Type() == "tuntap" &&
		link.Attrs().RawFlags&unix.IFF_LOWER_UP == 0
}

// sweepStale removes the sandbox TAPs that nothing has open and whose
// addresses are in pool: leftovers of sandboxes whose sietchd died or
// whose state directory is gone. A stopped sandbox's TAP is made again
// when it starts. It returns the interfaces removed.
func sweepStale(pool netip.Prefix) ([]string, error) {
	var removed []string
	err := linksIn(pool, func(link netlink.Link, _ netlink.Addr) (bool, error) {
		if !staleTAP(link) {
			return true, nil
		}
		if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			return false, fmt.Errorf("remove the stale sandbox interface %s: %w", link.Attrs().Name, err)
		}
		removed = append(removed, link.Attrs().Name)
		return true, nil
	})
	return removed, err
}
