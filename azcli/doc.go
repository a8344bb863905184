// Package azcli holds the compatibility test that drives the real Azure CLI
// (`az`, Debian's azure-cli package) as a subprocess against a Custody server
// through the customer-managed-key walk-through (see az_test.go).
package azcli
