package virtio

// DirtyLog is a vhost dirty-page log as the vhost-user front-end shares it
// (vhost-user.rst "Migration", SET_LOG_BASE): one bit per 4 KiB page of
// guest-physical address space, page p being bit p%8 of byte p/8. Devices
// mark the pages they write so that the VMM can save only what changed. Bits
// are set with atomic ORs: several queues of one device, and the VMM, share
// the log.
type DirtyLog struct {
	words []uint64 // the shared mapping, viewed as 64-bit words
}

// DirtyLogPage is the page size of a dirty log (VHOST_LOG_PAGE).
const DirtyLogPage = 4096

// NewDirtyLog wraps a shared mapping of the log. Its length is rounded down
// to whole 64-bit words; pages past the end of the log are not recorded (the
// front-end sizes it to cover guest RAM).
func NewDirtyLog(mapping []byte) *DirtyLog {
	return &DirtyLog{words: wordsOf(mapping)}
}

// Pages is the number of pages the log covers.
func (l *DirtyLog) Pages() uint64 { return uint64(len(l.words)) * 64 }

// Mark records that [gpa, gpa+n) was written.
func (l *DirtyLog) Mark(gpa, n uint64) {
	if l == nil || n == 0 {
		return
	}
	first := gpa / DirtyLogPage
	last := (gpa + n - 1) / DirtyLogPage
	if gpa+n < gpa { // wraps: cannot be guest RAM, which a chain walk checked
		last = ^uint64(0) / DirtyLogPage
	}
	for p := first; p <= last && p < l.Pages(); {
		w := p / 64
		bit := p % 64
		span := min(64-bit, last-p+1)
		mask := ^uint64(0)
		if span < 64 {
			mask = (1<<span - 1) << bit
		}
		orWord(&l.words[w], mask)
		p += span
	}
}

// Collect moves the log's bits into dst (one bit per page, same layout as
// KVM_GET_DIRTY_LOG: page p is bit p%64 of word p/64) and clears them, one
// word at a time with an atomic swap, so no mark made meanwhile is lost.
// dst may be shorter or longer than the log.
func (l *DirtyLog) Collect(dst []uint64) {
	for i := range l.words {
		v := swapWord(&l.words[i], 0)
		if i < len(dst) {
			dst[i] |= v
		}
	}
}
