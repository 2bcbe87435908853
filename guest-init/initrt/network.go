package initrt

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetworkResult says what ConfigureNetwork did, for the log.
type NetworkResult struct {
	Eth0    bool   // eth0 exists and is up
	Summary string // e.g. "eth0 10.0.2.15/24 via 10.0.2.2"
}

// ConfigureNetwork brings lo up and, when the guest has eth0, brings it up
// with cfg's address and default route. No eth0 is not an error: the VM
// simply has no network device. One netlink socket serves every request.
func ConfigureNetwork(cfg Config) (NetworkResult, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return NetworkResult{}, fmt.Errorf("network: open a netlink socket: %w", err)
	}
	defer h.Close()

	lo, err := h.LinkByName("lo")
	if err != nil {
		return NetworkResult{}, fmt.Errorf("network: find lo: %w", err)
	}
	// The kernel gives lo 127.0.0.1/8 when it comes up (net/ipv4/devinet.c).
	if err := h.LinkSetUp(lo); err != nil {
		return NetworkResult{}, fmt.Errorf("network: bring lo up: %w", err)
	}

	eth, err := h.LinkByName("eth0")
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return NetworkResult{Summary: "no eth0"}, nil
		}
		return NetworkResult{}, fmt.Errorf("network: find eth0: %w", err)
	}
	res := NetworkResult{Eth0: true, Summary: "eth0 up, no address (no sietch.ip=)"}
	if cfg.Addr.IsValid() {
		addr := &netlink.Addr{IPNet: &net.IPNet{
			IP:   cfg.Addr.Addr().AsSlice(),
			Mask: net.CIDRMask(cfg.Addr.Bits(), 32),
		}}
		if err := h.AddrAdd(eth, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return NetworkResult{}, fmt.Errorf("network: add %s to eth0: %w", cfg.Addr, err)
		}
		res.Summary = "eth0 " + cfg.Addr.String()
	}
	if err := h.LinkSetUp(eth); err != nil {
		return NetworkResult{}, fmt.Errorf("network: bring eth0 up: %w", err)
	}
	if cfg.Gateway.IsValid() {
		route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: cfg.Gateway.AsSlice()}
		if err := h.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
			return NetworkResult{}, fmt.Errorf("network: default route via %s: %w", cfg.Gateway, err)
		}
		res.Summary += " via " + cfg.Gateway.String()
	}
	return res, nil
}

// ResolvConf is /etc/resolv.conf for cfg's name servers, "" for none.
func ResolvConf(cfg Config) string {
	if len(cfg.DNS) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("# written by sietch guest-init from sietch.dns=\n")
	for _, a := range cfg.DNS {
		b.WriteString("nameserver " + a.String() + "\n")
	}
	return b.String()
}

// WriteResolvConf writes /etc/resolv.conf in the current root when cfg has
// name servers. An image's resolv.conf that is a symlink (systemd-resolved
// style) is replaced by the file.
func WriteResolvConf(cfg Config) error {
	content := ResolvConf(cfg)
	if content == "" {
		return nil
	}
	err := os.WriteFile("/etc/resolv.conf.sietch", []byte(content), 0o644)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll("/etc", 0o755); err != nil {
			return fmt.Errorf("write /etc/resolv.conf: %w", err)
		}
		err = os.WriteFile("/etc/resolv.conf.sietch", []byte(content), 0o644)
	}
	if err != nil {
		return fmt.Errorf("write /etc/resolv.conf: %w", err)
	}
	if err := os.Rename("/etc/resolv.conf.sietch", "/etc/resolv.conf"); err != nil {
		return fmt.Errorf("write /etc/resolv.conf: %w", err)
	}
	return nil
}

// ReconfigureNetwork gives eth0 cfg's address in place of the ones it has,
// its default route through cfg's gateway and cfg's name servers: a
// restored sandbox takes on its own TAP's network, not its snapshot's.
func ReconfigureNetwork(cfg Config) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("network: open a netlink socket: %w", err)
	}
	defer h.Close()
	if err := reconfigureEth0(h, cfg); err != nil {
		return err
	}
	return WriteResolvConf(cfg)
}

// reconfigureEth0 is ReconfigureNetwork's link part, through h.
func reconfigureEth0(h *netlink.Handle, cfg Config) error {
	if !cfg.Addr.IsValid() {
		return errors.New("network: no address to give eth0")
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("network: find eth0 (the sandbox has a network and the guest no eth0): %w", err)
	}
	addrs, err := h.AddrList(eth, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("network: eth0's addresses: %w", err)
	}
	have := false
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == cfg.Addr.Addr() && ones == cfg.Addr.Bits() {
			have = true
			continue
		}
		if err := h.AddrDel(eth, &a); err != nil {
			return fmt.Errorf("network: remove %v from eth0: %w", a.IPNet, err)
		}
	}
	if !have {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: cfg.Addr.Addr().AsSlice(), Mask: net.CIDRMask(cfg.Addr.Bits(), 32)}}
		if err := h.AddrAdd(eth, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("network: add %s to eth0: %w", cfg.Addr, err)
		}
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("network: bring eth0 up: %w", err)
	}
	if cfg.Gateway.IsValid() {
		route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: cfg.Gateway.AsSlice()}
		if err := h.RouteReplace(route); err != nil {
			return fmt.Errorf("network: default route via %s: %w", cfg.Gateway, err)
		}
	}
	return nil
}
