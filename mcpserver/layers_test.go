package mcpserver

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyTheSDK holds the layering: the MCP server is a client of
// sietchd's API like the CLI, and links neither the service nor machine code.
func TestOnlyTheSDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	const mod = "github.com/sietch-vm/sietch/"
	allowed := []string{mod + "api/client", mod + "api/model", mod + "wire/execstream", mod + "internal/", mod + "mcpserver"}
next:
	for _, pkg := range strings.Fields(string(out)) {
		if !strings.HasPrefix(pkg, mod) {
			continue
		}
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, a) && strings.HasSuffix(a, "/") {
				continue next
			}
		}
		t.Errorf("mcpserver links %s; it should reach sietchd through api/client only", pkg)
	}
}
