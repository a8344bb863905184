//go:build !cgo

package sandbox

// Without cgo the sandbox init (init.c) is not linked in: Probe says so.
const initLinked = false
