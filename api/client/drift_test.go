package client

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"testing"
)

// operations names the method of Client that calls each operation of
// api/openapi.yaml, by operationId.
var operations = map[string]string{
	"getHealth":          "Health",
	"getOpenAPIDocument": "OpenAPI",
	"getMetrics":         "Metrics",
	"createSandbox":      "Create",
	"listSandboxes":      "List",
	"getSandbox":         "Get",
	"deleteSandbox":      "Delete",
	"pauseSandbox":       "Pause",
	"resumeSandbox":      "Resume",
	"createSnapshot":     "Snapshot",
	"listSnapshots":      "Snapshots",
	"forkSandbox":        "Fork",
	"execCommand":        "Exec",
	"writeFile":          "Upload",
	"readFile":           "Download",
	"removeFile":         "Remove",
	"listFiles":          "ListFiles",
	"statFile":           "Stat",
	"makeDirectory":      "Mkdir",
	"renameFile":         "Rename",
	"downloadTree":       "DownloadTar",
	"uploadTree":         "UploadTar",
	"watchDirectory":     "Watch",
	"forwardPort":        "ForwardPort",
	"listPortForwards":   "Ports",
	"deletePortForward":  "ClosePort",
	"getConsole":         "Console",
	"getSandboxStats":    "Stats",
	"getSandboxNetwork":  "Network",
	"setSandboxNetwork":  "SetNetwork",
	"listProcesses":      "Processes",
	"getProcess":         "Process",
	"deleteProcess":      "DeleteProcess",
	"processOutput":      "ProcessOutput",
	"signalProcess":      "SignalProcess",
	"waitProcess":        "WaitProcess",
	"createContext":      "NewContext",
	"listContexts":       "Contexts",
	"deleteContext":      "DeleteContext",
	"runCode":            "Run",
	"interruptContext":   "Interrupt",
	"restartContext":     "RestartContext",
	"listImages":         "Images",
	"buildImage":         "BuildImage",
	"getDesktop":         "Desktop",
	"takeScreenshot":     "Screenshot",
	"sendInput":          "Input",
	"serveVNC":           "VNC",
	"openURL":            "OpenURL",
	"buildTemplate":      "BuildTemplate",
	"listTemplates":      "Templates",
	"getTemplate":        "Template",
	"deleteTemplate":     "DeleteTemplate",
	"listAllSnapshots":   "AllSnapshots",
	"getSnapshot":        "GetSnapshot",
	"deleteSnapshot":     "DeleteSnapshot",
}

// operationIDs reads every operationId of api/openapi.yaml.
func operationIDs(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range regexp.MustCompile(`(?m)^\s+operationId:\s*(\w+)\s*$`).FindAllSubmatch(doc, -1) {
		ids = append(ids, string(m[1]))
	}
	if len(ids) < 40 {
		t.Fatalf("found %d operationIds in api/openapi.yaml; the pattern is stale", len(ids))
	}
	return ids
}

// The Go SDK has a method for every operation of the API document and
// names none that is not there.
func TestSDKCoversOpenAPI(t *testing.T) {
	ids := operationIDs(t)
	inDoc := map[string]bool{}
	ct := reflect.TypeFor[*Client]()
	for _, id := range ids {
		inDoc[id] = true
		m, ok := operations[id]
		if !ok {
			t.Errorf("operation %s of api/openapi.yaml has no Client method: add one and name it in operations", id)
			continue
		}
		if _, ok := ct.MethodByName(m); !ok {
			t.Errorf("operation %s: Client has no method %s", id, m)
		}
	}
	var stale []string
	for id := range operations {
		if !inDoc[id] {
			stale = append(stale, id)
		}
	}
	sort.Strings(stale)
	for _, id := range stale {
		t.Errorf("operations names %s, which api/openapi.yaml does not have", id)
	}
}
