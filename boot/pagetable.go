package boot

// Page-table entry bits (Intel SDM Vol. 3A §4.5, Tables 4-15 to 4-18).
const (
	ptePresent  = 1 << 0
	pteWritable = 1 << 1
	pteUser     = 1 << 2
	pteHuge     = 1 << 7 // PS: the PD entry maps a 2 MiB page
)

// Where the levels of the identity map live.
const (
	pdptAddr   = PML4Addr + 0x1000
	pdAddr     = PML4Addr + 0x2000
	numPDs     = 4 // 4 x 1 GiB
	pageTables = (2 + numPDs) * 0x1000
)

// writePageTables identity-maps the first 4 GiB (MMIO gap included, so
// test guests reach devices) with 2 MiB pages. U/S and R/W are set at every
// level so that CPL3 code may use the same mapping.
func writePageTables(m guestMem) error {
	t, err := m.region(PML4Addr, pageTables, "page tables")
	if err != nil {
		return err
	}
	clear(t)
	const flags = ptePresent | pteWritable | pteUser
	le.PutUint64(t[0:], pdptAddr|flags)
	pdpt := t[pdptAddr-PML4Addr:]
	for i := range uint64(numPDs) {
		le.PutUint64(pdpt[i*8:], (pdAddr+i*0x1000)|flags)
	}
	pd := t[pdAddr-PML4Addr:]
	for i := range uint64(numPDs * 512) {
		le.PutUint64(pd[i*8:], i<<21|flags|pteHuge)
	}
	return nil
}
