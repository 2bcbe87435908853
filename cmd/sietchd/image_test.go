package main

import (
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/sandbox"
)

func TestParseImage(t *testing.T) {
	tests := []struct {
		in      string
		want    sandbox.ImageSpec
		wantErr string
	}{
		{in: "tg:kind=testguest,kernel=/g/counter.elf,mem=64",
			want: sandbox.ImageSpec{Name: "tg", Kind: "testguest", Kernel: "/g/counter.elf", MemMiB: 64}},
		{in: "default:kind=linux,kernel=/k,initrd=/i,rootfs=/r.ext4,cmdline=console=ttyS0 clearcpuid=smap,popcnt quiet",
			want: sandbox.ImageSpec{Name: "default", Kind: "linux", Kernel: "/k", Initrd: "/i", RootFS: "/r.ext4", Cmdline: "console=ttyS0 clearcpuid=smap,popcnt quiet"}},
		{in: "c:cmdline=n=5,kind=testguest,kernel=/x", wantErr: "want kind=linux"},
		{in: "nokind:kernel=/k", wantErr: "kind="},
		{in: "x:kind=linux", wantErr: "kernel= is required"},
		{in: "kind=linux,kernel=/k", wantErr: "want NAME:"},
		{in: ":kind=linux,kernel=/k", wantErr: "want NAME:"},
		{in: "x:kind=linux,kernel=/k,color=red", wantErr: "unknown option"},
		{in: "x:kind=linux,kernel=/k,kernel=/j", wantErr: "twice"},
		{in: "x:kind=linux,kernel=/k,mem=lots", wantErr: "mem=lots"},
		{in: "x:kind=linux,kernel", wantErr: "want key=value"},
		{in: "x:kind=linux,kernel=/k,xcmdline=a", wantErr: "own option"},
	}
	for _, tt := range tests {
		got, err := parseImage(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseImage(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseImage(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestRunUsage(t *testing.T) {
	var b strings.Builder
	if code := run([]string{"--bogus"}, &b); code != exitUsage {
		t.Errorf("sietchd --bogus exited %d, want %d", code, exitUsage)
	}
	b.Reset()
	if code := run([]string{"--image", "x"}, &b); code != exitUsage || !strings.Contains(b.String(), "--image") {
		t.Errorf("sietchd --image x exited %d (%s), want %d naming --image", code, b.String(), exitUsage)
	}
	b.Reset()
	if code := run([]string{"--help"}, &b); code != exitOK || !strings.Contains(b.String(), "--state-dir") {
		t.Errorf("sietchd --help exited %d:\n%s", code, b.String())
	}
}
