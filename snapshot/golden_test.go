package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite "+goldenFile+" from the current encoder")

// goldenFile is the state file's payload (indented) for goldenState.
const goldenFile = "testdata/state.golden.json"

// goldenState is a State in which every field at every depth holds a
// non-zero value derived from its position (see fillByPath).
func goldenState(t testing.TB) *State {
	t.Helper()
	var s State
	fillByPath(t, reflect.ValueOf(&s).Elem(), "")
	s.Version = FormatVersion // a version bump shows in the golden file
	return &s
}

// TestStateGolden pins the state file's JSON: every key, at every depth,
// and which value lands under which key. It fails when a field of State or
// of a wire type is renamed, added, removed or moved.
func TestStateGolden(t *testing.T) {
	payload, err := marshalState(goldenState(t))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := json.Indent(&got, payload, "", "\t"); err != nil {
		t.Fatal(err)
	}
	got.WriteByte('\n')
	if *update {
		if err := os.WriteFile(goldenFile, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run go test ./snapshot -run TestStateGolden -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("the state file's JSON differs from %s:\n%s", goldenFile, goldenDiff(t, want, got.Bytes()))
	}
}

// TestStateGoldenReads decodes the golden file as Read does (unknown fields
// refused at every depth) and expects goldenState back, so the golden file
// is always one the reader accepts, and a field the wire types do not carry
// shows up here.
func TestStateGoldenReads(t *testing.T) {
	b, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalState(b)
	if err != nil {
		t.Fatalf("%s does not read: %v", goldenFile, err)
	}
	want := goldenState(t)
	if !reflect.DeepEqual(got, want) {
		var diffs []string
		deepDiff(reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem(), "State", &diffs)
		if len(diffs) == 0 {
			diffs = []string{"(only unexported fields differ)"}
		}
		t.Fatalf("%s reads back different from goldenState (a field the wire types drop, or a stale golden file):\n  %s",
			goldenFile, strings.Join(capList(diffs, 20), "\n  "))
	}
}

// TestGoldenFillsEverything guards the filler: every field of goldenState,
// at every depth, is non-zero.
func TestGoldenFillsEverything(t *testing.T) {
	var zero []string
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		if v.IsZero() {
			zero = append(zero, path)
			return
		}
		switch v.Kind() {
		case reflect.Pointer:
			walk(v.Elem(), path)
		case reflect.Struct:
			if v.Type() == reflect.TypeFor[time.Time]() {
				return
			}
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i), path+"."+v.Type().Field(i).Name)
				}
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k), fmt.Sprintf("%s[%v]", path, k))
			}
		}
	}
	walk(reflect.ValueOf(goldenState(t)).Elem(), "State")
	if len(zero) > 0 {
		t.Fatalf("goldenState leaves zero: %s", strings.Join(capList(zero, 20), ", "))
	}
}

// fillByPath sets every exported field reachable from v to a non-zero value
// derived from path, the field's position as struct field indexes and
// element indexes: a value that an encoder moves to another key, or swaps,
// is caught, and renaming a Go field (whose JSON name a tag keeps) changes
// no value. Slices get two elements, maps one key, pointers a value.
func fillByPath(t testing.TB, v reflect.Value, path string) {
	sum := sha256.Sum256([]byte(path))
	h := binary.LittleEndian.Uint64(sum[:])
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(max(1, int64(h>>(65-v.Type().Bits()))))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(max(1, h>>(64-v.Type().Bits())))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1 + float64(h%1000000)/8) // exact in both widths
	case reflect.String:
		v.SetString(fmt.Sprintf("s%08x", uint32(h)))
	case reflect.Array:
		for i := range v.Len() {
			fillByPath(t, v.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range s.Len() {
			fillByPath(t, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMapWithSize(v.Type(), 1)
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillByPath(t, k, path+"{key}")
		fillByPath(t, e, path+"{value}")
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillByPath(t, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(int64(h>>31), int64(h%1e9)).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillByPath(t, v.Field(i), path+"."+strconv.Itoa(i))
			}
		}
	default:
		t.Fatalf("goldenState: no filler for %s at %s; teach fillByPath this kind", v.Type(), path)
	}
}

// goldenDiff says which keys of the golden JSON want are gone, which are
// new in got, and which hold other values, and what to do about it.
func goldenDiff(t testing.TB, want, got []byte) string {
	t.Helper()
	w, g := flatJSON(t, want), flatJSON(t, got)
	var gone, added, changed []string
	for k, wv := range w {
		gv, ok := g[k]
		switch {
		case !ok:
			gone = append(gone, k)
		case gv != wv:
			changed = append(changed, fmt.Sprintf("%s: %s, golden %s", k, clip(gv), clip(wv)))
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			added = append(added, k)
		}
	}
	slices.Sort(gone)
	slices.Sort(added)
	slices.Sort(changed)
	var b strings.Builder
	for _, l := range []struct {
		what string
		keys []string
	}{{"keys in the golden file the encoder no longer writes", gone}, {"keys the encoder writes that the golden file lacks", added}, {"keys whose value changed", changed}} {
		if len(l.keys) > 0 {
			fmt.Fprintf(&b, "%s (%d):\n  %s\n", l.what, len(l.keys), strings.Join(capList(l.keys, 20), "\n  "))
		}
	}
	const fix = "bump snapshot.FormatVersion and regenerate the golden file with -update (go test ./snapshot -run TestStateGolden -update)"
	switch {
	case len(gone)+len(added) > 0:
		b.WriteString("a field rename changed the snapshot format: keep the old JSON name with a struct tag, or " + fix)
	case len(changed) > 0:
		b.WriteString("values moved between keys: a wire type drops or swaps a field, or a struct gained or reordered fields (fillByPath derives each value from its field's position; TestStateGoldenReads names the field); carry the field in wire.go, or if the format change is meant, " + fix)
	default:
		b.WriteString("same keys and values, different order or layout: if that is meant, " + fix)
	}
	return b.String()
}

// flatJSON maps each leaf of a JSON document to its value, keyed by path
// (VCPUs[0].Regs.RAX).
func flatJSON(t testing.TB, b []byte) map[string]string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("golden JSON does not parse: %v", err)
	}
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(strings.TrimPrefix(path+"."+k, "."), e)
			}
			if len(v) == 0 {
				out[path] = "{}"
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
			if len(v) == 0 {
				out[path] = "[]"
			}
		default:
			j, _ := json.Marshal(v)
			out[path] = string(j)
		}
	}
	walk("", doc)
	return out
}

// deepDiff appends the Go paths at which got and want differ.
func deepDiff(got, want reflect.Value, path string, out *[]string) {
	if reflect.DeepEqual(got.Interface(), want.Interface()) {
		return
	}
	switch got.Kind() {
	case reflect.Pointer:
		if !got.IsNil() && !want.IsNil() {
			deepDiff(got.Elem(), want.Elem(), path, out)
			return
		}
	case reflect.Struct:
		if got.Type() != reflect.TypeFor[time.Time]() {
			for i := range got.NumField() {
				if got.Type().Field(i).IsExported() {
					deepDiff(got.Field(i), want.Field(i), path+"."+got.Type().Field(i).Name, out)
				}
			}
			return
		}
	case reflect.Slice, reflect.Array:
		if got.Len() == want.Len() {
			for i := range got.Len() {
				deepDiff(got.Index(i), want.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
			}
			return
		}
	}
	*out = append(*out, fmt.Sprintf("%s: read %s, want %s", path, clip(fmt.Sprint(got.Interface())), clip(fmt.Sprint(want.Interface()))))
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

func capList(l []string, n int) []string {
	if len(l) <= n {
		return l
	}
	return append(l[:n:n], fmt.Sprintf("... and %d more", len(l)-n))
}
