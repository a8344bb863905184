//go:build cgo

package sandbox

// The sandbox init (init.c) is linked into every binary that imports this
// package; it runs before the Go runtime when the process is started with
// argv[0] "custody-sandbox-init".

// #cgo CFLAGS: -O2 -Wall
import "C"

const initLinked = true
