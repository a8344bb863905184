//go:build !cgo

package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"io"
)

// Available reports whether this binary can load PKCS#11 modules: it was
// built without cgo, so it cannot.
const Available = false

var errNoCgo = errors.New("this custody binary was built without cgo, so it cannot load a PKCS#11 module: build it with CGO_ENABLED=1 and a C compiler")

// ErrNoRootKey is returned when the token holds no root key under the URI's
// object label.
var ErrNoRootKey = errors.New("the token holds no root key with this label")

// Token is a connection to a PKCS#11 token (none in this build).
type Token struct{}

// Protection is what the token says about a key object.
type Protection struct{ Sensitive, Extractable, Token bool }

// Key is a private key held in a token (none in this build).
type Key struct{}

func Open(*URI) (*Token, error)                        { return nil, errNoCgo }
func (*Token) URI() *URI                               { return nil }
func (*Token) Close()                                  {}
func (*Token) InitRoot() (bool, error)                 { return false, errNoCgo }
func (*Token) SealingKey() ([]byte, error)             { return nil, errNoCgo }
func (*Token) RootHMAC([]byte) ([]byte, error)         { return nil, errNoCgo }
func (*Token) RootProtection() (Protection, error)     { return Protection{}, errNoCgo }
func (*Token) GenerateRSA(string, int) (*Key, error)   { return nil, errNoCgo }
func (*Token) GenerateEC(string, string) (*Key, error) { return nil, errNoCgo }
func (*Token) OpenKey([]byte) (*Key, error)            { return nil, errNoCgo }
func (*Token) ImportRSA(string, *rsa.PrivateKey) (*Key, error) {
	return nil, errNoCgo
}
func (*Token) ImportEC(string, *ecdsa.PrivateKey) (*Key, error) {
	return nil, errNoCgo
}
func (*Token) DestroyKey([]byte) error { return errNoCgo }
func (*Token) KeyProtection([]byte) (Protection, error) {
	return Protection{}, errNoCgo
}
func (*Token) ReadPrivateExponent([]byte) ([]byte, error) { return nil, errNoCgo }
func (*Token) KeyIDs(string) ([][]byte, error)            { return nil, errNoCgo }
func (*Key) ID() []byte                                   { return nil }
func (*Key) Public() crypto.PublicKey                     { return nil }
func (*Key) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errNoCgo
}
func (*Key) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) {
	return nil, errNoCgo
}
