package jail

// Ids inside a device process's user namespace and the host ids they map
// to. Two are needed: root in the namespace holds the capabilities that
// Enter needs to build the empty root; Enter then switches every thread to
// DeviceID, which makes the kernel clear each thread's permitted, effective
// and ambient capabilities (capabilities(7), "Effect of user ID changes on
// capabilities"). Capability sets are per thread and a Go program always
// has several threads; a uid change is the one thing glibc (and Go without
// cgo) applies to all of them.
const (
	// NobodyID is the host uid and gid a device process runs as: the
	// conventional unprivileged "nobody", which owns no files a device
	// could reach, and which no host process is expected to run as with
	// intent.
	NobodyID = 65534
	// SetupID is the host uid and gid of root in the namespace, held only
	// while Enter runs; any unused unprivileged id would do.
	SetupID = 65533
	// DeviceID is the uid and gid inside the namespace after Enter; it is
	// NobodyID on the host.
	DeviceID = 1
)
