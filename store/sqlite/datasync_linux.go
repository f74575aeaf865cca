package sqlite

import (
	"os"
	"syscall"
)

// datasync flushes f's data (not its timestamps), as SQLite's own sync does on Linux.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
