package initrt

import (
	"reflect"
	"testing"
)

func TestEnv(t *testing.T) {
	base := []string{"PATH=" + DefaultPath, "HOME=/root", "TERM=linux", "LANG=C.UTF-8"}
	glibc := "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX_Fast_Unaligned_Load"
	godebug := "GODEBUG=cpu.avx=off,cpu.avx2=off,cpu.avx512f=off"
	tests := []struct {
		name      string
		compat    bool
		inherited []string
		want      []string
	}{
		{"plain", false, nil, base},
		// The kernel gives init HOME=/ and TERM=linux; ours win.
		{"kernel defaults", false, []string{"HOME=/", "TERM=linux"}, base},
		{"compat", true, nil, append(append([]string{}, base...), glibc, godebug)},
		{"extra words pass", false, []string{"FOO=bar", "junk", "=x", "FOO=again"}, append(append([]string{}, base...), "FOO=bar")},
		{"compat extends", true, []string{"GODEBUG=madvdontneed=1", "GLIBC_TUNABLES=glibc.malloc.check=3"},
			append(append([]string{}, base...),
				"GLIBC_TUNABLES=glibc.malloc.check=3:glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX_Fast_Unaligned_Load",
				"GODEBUG=madvdontneed=1,cpu.avx=off,cpu.avx2=off,cpu.avx512f=off")},
		{"no compat keeps user's", false, []string{"GODEBUG=x=1"}, append(append([]string{}, base...), "GODEBUG=x=1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Env(Config{Compat: tt.compat}, tt.inherited); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Env =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
