# sietch build, test and benchmark entry points. Outputs go to build/ and bin/
# (never committed).

GO        ?= go
BUILD     := build
KERNEL    := $(BUILD)/kernel/vmlinux
SMOKE     := $(BUILD)/smoke/smoke.cpio
INITRAMFS := $(BUILD)/initramfs/initramfs.cpio
ROOTFS    := $(BUILD)/rootfs.ext4
GUESTS    := $(BUILD)/testguest

APT_PACKAGES := gcc make libc6-dev linux-libc-dev linux-source-6.1 bc bison flex \
	libelf-dev libssl-dev xz-utils libseccomp-dev qemu-system-x86 e2fsprogs iproute2 \
	debootstrap iputils-ping python3 python3-pytest tmux busybox-static xvfb vncsnapshot

.PHONY: all vmm sietch sietchd deps quickstart hello test test-sdk test-short kernel smoke-initramfs initramfs image image-desktop image-desktop-lite test-desktop testguests bench fuzz fuzz-short fuzz-long soak vet lint-openapi clean

all: vmm sietch sietchd

vmm:
	$(GO) build -o bin/vmm ./cmd/vmm

sietch:
	$(GO) build -o bin/sietch ./cmd/sietch

sietchd: vmm
	$(GO) build -o bin/sietchd ./cmd/sietchd

# What the build and the tests need and is missing: Debian packages (see
# README, "Dependencies"), Go modules, the pinned npm packages.
deps:
	GO=$(GO) scripts/deps.sh $(APT_PACKAGES)

# From a fresh machine to a running sandbox: deps, the kernel, initramfs,
# default image and binaries (cached), sietchd on build/state, a sandbox,
# python3 in it, and what to try next.
quickstart:
	GO=$(GO) scripts/quickstart.sh

testguests:
	$(GO) run ./testguest/cmd/testguest -o $(GUESTS)

# Build vmm and a test guest, and boot it.
hello: vmm testguests
	bin/vmm run --kernel $(GUESTS)/hello.elf --mem 64M

kernel:
	guest-init/kernel/build.sh $(BUILD)/kernel

smoke-initramfs:
	guest-init/smoke/build.sh $(BUILD)/smoke

# The guest initramfs: static guest-init (PID 1 with the agent) as /init;
# the same tree gives the same bytes.
initramfs:
	mkdir -p $(BUILD)/initramfs
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BUILD)/initramfs/guest-init ./guest-init/cmd/guest-init
	$(GO) run ./guest-init/cmd/mkinitramfs -o $(INITRAMFS) --init $(BUILD)/initramfs/guest-init

# The default root image (Debian bookworm minbase + python3, git, curl):
# debootstrap, then mkfs.ext4 -d; needs root; cached in build/images.
image:
	$(GO) run ./cmd/sietch image build --default --cache $(BUILD)/images -o $(ROOTFS)

# The desktop image: the default one with Xvfb, a font, Chromium, Openbox
# and noVNC (sietchd offers it as the image "desktop" when
# build/desktop.ext4 exists).
image-desktop:
	$(GO) run ./cmd/sietch image build --desktop --cache $(BUILD)/images -o $(BUILD)/desktop.ext4

# The desktop image without Chromium, Openbox and noVNC: what make test's
# desktop checks use (X, screenshots, input, VNC), without the minutes a
# browser adds to building the image and starting it.
image-desktop-lite:
	$(GO) run ./cmd/sietch image build --desktop --browser=false --cache $(BUILD)/images -o $(BUILD)/desktop-lite.ext4

# Everything, including the KVM tests and the Linux end-to-end tests. The
# root image needs the Debian mirror: if it cannot be built, the end-to-end
# test says so and skips (the rest still runs).
test: kernel smoke-initramfs vet lint-openapi
	$(MAKE) image || echo "*** make image failed: TestLinuxEndToEnd will skip (see above) ***"
	$(MAKE) image-desktop-lite || echo "*** make image-desktop-lite failed: the desktop end-to-end checks will skip (see above) ***"
	SIETCH_KERNEL=$(abspath $(KERNEL)) SIETCH_SMOKE_INITRAMFS=$(abspath $(SMOKE)) SIETCH_ROOTFS=$(abspath $(ROOTFS)) \
		SIETCH_DESKTOP_ROOTFS=$(abspath $(BUILD)/desktop-lite.ext4) \
		$(GO) test -count=1 -timeout 25m ./...
	$(MAKE) test-sdk
	$(MAKE) fuzz-short

# The Python and TypeScript SDKs and the MCP interoperability test, against
# a real sietchd (scripts/sdk-testenv.sh: one template build for them all).
test-sdk: all kernel initramfs image
	scripts/sdk-testenv.sh scripts/sdk-tests.sh

# The desktop end-to-end checks on the full desktop image, with Chromium:
# its template (Openbox up), screenshots, input, VNC, and a page opened
# with sietch browser until it is on the screen (minutes here; the time is
# in docs/PERFORMANCE.md).
test-desktop: kernel initramfs image image-desktop
	SIETCH_KERNEL=$(abspath $(KERNEL)) SIETCH_ROOTFS=$(abspath $(ROOTFS)) SIETCH_DESKTOP_ROOTFS=$(abspath $(BUILD)/desktop.ext4) \
		SIETCH_E2E_ONLY=desktop SIETCH_TEST_BROWSER=1 $(GO) test -count=1 -timeout 80m -run TestSietchLinuxTemplates -v ./cmd/sietch

# Unit and KVM tests without the guest kernel (the Linux boot test skips).
test-short:
	$(GO) test -count=1 -timeout 10m ./...

vet:
	$(GO) vet ./...

# api/openapi.yaml against Redocly CLI's recommended rules (pinned in
# tools/openapi-lint; warnings fail too).
lint-openapi:
	tools/openapi-lint/lint.sh

# -p 1: packages benchmarked in parallel on 2 cores disturb each other.
bench: vmm kernel smoke-initramfs image image-desktop-lite
	SIETCH_KERNEL=$(abspath $(KERNEL)) SIETCH_SMOKE_INITRAMFS=$(abspath $(SMOKE)) \
		$(GO) test -p 1 -run '^$$' -bench . -skip 'SnapshotFull|SnapshotDiff|Restore|Fork|Agent' -benchtime 20x -count 1 \
		./vmm ./cmd/vmm ./virtio/... | tee $(BUILD)/bench.txt
	# Snapshot benchmarks move GiBs per iteration: fewer rounds.
	$(GO) test -p 1 -run '^$$' -bench 'SnapshotFull|SnapshotDiff|Restore|Fork|WriteFull' -benchtime 3x -count 1 ./vmm ./snapshot | tee -a $(BUILD)/bench.txt
	# One Linux boot to the agent; sietchd's create-from-snapshot; templates against cold boots;
	# sessions (warm code runs against new interpreters, terminal echo, tar against plain files);
	# a Dockerfile build cold against cached; computer use against a program per action.
	SIETCH_KERNEL=$(abspath $(KERNEL)) SIETCH_ROOTFS=$(abspath $(ROOTFS)) SIETCH_DESKTOP_ROOTFS=$(abspath $(BUILD)/desktop-lite.ext4) \
		$(GO) test -p 1 -run '^$$' -bench 'Agent|CreateFromSnapshot|Templates|Sessions|ImageBuild|Desktop' -benchtime 1x -count 1 ./cmd/vmm ./api | tee -a $(BUILD)/bench.txt
	scripts/bench-boot.sh $(KERNEL) $(SMOKE) | tee -a $(BUILD)/bench.txt
	# sietchd's egress path (firewall and NAT) against a plain routed link.
	$(GO) test -run '^$$' -bench EgressPath -benchtime 20x -count 3 ./internal/hostnet | tee -a $(BUILD)/bench.txt

# Every fuzz target in the module (found with go test -list) for FUZZTIME
# each; goes on past a failing target and ends with a table of executions
# per target (scripts/fuzz.sh). FUZZ_MATCH=regexp picks targets by
# pkg:Name. make test runs a short pass (fuzz-short); the campaign whose
# results docs/RELIABILITY.md records is fuzz-long.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

fuzz-short:
	FUZZTIME=2s GO=$(GO) scripts/fuzz.sh

# The lifecycle soak (api TestSoak) with SOAK_CYCLES cycles per client
# (make test runs 4): nothing may be left behind.
SOAK_CYCLES ?= 50
soak:
	SIETCH_SOAK_CYCLES=$(SOAK_CYCLES) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 60m ./api

fuzz-long:
	mkdir -p $(BUILD)
	FUZZTIME=10m GO=$(GO) FUZZ_REPORT=$(BUILD)/fuzz-report.md scripts/fuzz.sh

clean:
	rm -rf $(BUILD) bin
