//go:build cgo

package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"
	"strings"
	"sync"

	"crypto/sha256"

	"github.com/miekg/pkcs11"
)

// Available reports whether this binary can load PKCS#11 modules (it is
// built with cgo).
const Available = true

// modules holds each PKCS#11 library loaded by this process: a library is
// initialised once and stays loaded.
var (
	modulesMu sync.Mutex
	modules   = map[string]*pkcs11.Ctx{}
	// users counts the open Tokens of each module.
	users = map[string]int{}
)

// module returns the loaded module at path; reload first finalises and
// initialises it again when no Token of it is open, so that tokens created
// since it was loaded (SoftHSM2 reads its token directory once) are seen.
func module(path string, reload bool) (*pkcs11.Ctx, error) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if c := modules[path]; c != nil {
		if !reload || users[path] > 0 {
			return c, nil
		}
		c.Finalize()
		if err := c.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			return nil, fmt.Errorf("PKCS#11 module %s: initialise: %w", path, err)
		}
		return c, nil
	}
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("PKCS#11 module %s cannot be loaded (is it a PKCS#11 library?)", path)
	}
	if err := c.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return nil, fmt.Errorf("PKCS#11 module %s: initialise: %w", path, err)
	}
	modules[path] = c
	return c, nil
}

// Token is a logged-in connection to one token, with a pool of sessions
// shared by concurrent callers.
type Token struct {
	uri      URI
	ctx      *pkcs11.Ctx
	slot     uint
	sessions chan pkcs11.SessionHandle
	all      []pkcs11.SessionHandle
	open     bool
	// root is the root key's handle once RootHMAC found it.
	root pkcs11.ObjectHandle
	mu   sync.Mutex
	// noOAEP256 is set once the token refused CKM_RSA_PKCS_OAEP with
	// SHA-256: such decryptions then run CKM_RSA_X_509 in the token.
	noOAEP256 bool
}

const poolSize = 4

// Open loads the URI's module, finds its token and logs in.
func Open(u *URI) (*Token, error) {
	pin, err := u.pin()
	if err != nil {
		return nil, err
	}
	t := &Token{uri: *u, sessions: make(chan pkcs11.SessionHandle, poolSize)}
	found := false
	for attempt := 0; attempt < 2 && !found; attempt++ {
		if t.ctx, err = module(u.ModulePath, attempt > 0); err != nil {
			return nil, err
		}
		if found, err = t.findSlot(); err != nil {
			return nil, err
		}
	}
	if !found {
		return nil, fmt.Errorf("no PKCS#11 token matches %s: check the token label (token=), serial or slot-id", u)
	}
	c := t.ctx
	modulesMu.Lock()
	users[u.ModulePath]++
	modulesMu.Unlock()
	t.open = true
	for range poolSize {
		sh, err := c.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("PKCS#11 token %s: open a session: %w", u, err)
		}
		t.all = append(t.all, sh)
		t.sessions <- sh
	}
	if err := c.Login(t.all[0], pkcs11.CKU_USER, pin); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Close()
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) {
			return nil, fmt.Errorf("PKCS#11 token %s: the PIN is wrong", u)
		}
		return nil, fmt.Errorf("PKCS#11 token %s: log in: %w", u, err)
	}
	return t, nil
}

// findSlot finds the slot of the token the URI names.
func (t *Token) findSlot() (bool, error) {
	u, c := &t.uri, t.ctx
	slots, err := c.GetSlotList(true)
	if err != nil {
		return false, fmt.Errorf("PKCS#11 module %s: list slots: %w", u.ModulePath, err)
	}
	for _, s := range slots {
		if u.SlotID != nil && *u.SlotID != s {
			continue
		}
		info, err := c.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if u.Token != "" && strings.TrimRight(info.Label, " \x00") != u.Token {
			continue
		}
		if u.Serial != "" && strings.TrimRight(info.SerialNumber, " \x00") != u.Serial {
			continue
		}
		t.slot = s
		return true, nil
	}
	return false, nil
}

// URI returns the token's URI (String omits the PIN).
func (t *Token) URI() *URI { return &t.uri }

// Close closes the token's sessions.
func (t *Token) Close() {
	for _, sh := range t.all {
		t.ctx.CloseSession(sh)
	}
	t.all = nil
	if t.open {
		t.open = false
		modulesMu.Lock()
		users[t.uri.ModulePath]--
		modulesMu.Unlock()
	}
}

func (t *Token) session() pkcs11.SessionHandle   { return <-t.sessions }
func (t *Token) release(sh pkcs11.SessionHandle) { t.sessions <- sh }

// find returns the handle of the one object matching tmpl, or 0.
func (t *Token) find(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	if err := t.ctx.FindObjectsInit(sh, tmpl); err != nil {
		return 0, err
	}
	objs, _, err := t.ctx.FindObjects(sh, 2)
	t.ctx.FindObjectsFinal(sh)
	if err != nil {
		return 0, err
	}
	switch len(objs) {
	case 0:
		return 0, nil
	case 1:
		return objs[0], nil
	}
	return 0, errors.New("several objects match")
}

// ErrNoRootKey is returned when the token holds no root key under the URI's
// object label.
var ErrNoRootKey = errors.New("the token holds no root key with this label")

func rootTemplate(label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// InitRoot generates the root key in the token (a 256-bit generic secret
// for CKM_SHA256_HMAC, sensitive, not extractable) unless it exists. It
// reports whether it created one.
func (t *Token) InitRoot() (bool, error) {
	sh := t.session()
	defer t.release(sh)
	h, err := t.find(sh, rootTemplate(t.uri.Object))
	if err != nil {
		return false, fmt.Errorf("PKCS#11 token %s: look for the root key: %w", &t.uri, err)
	}
	if h != 0 {
		return false, nil
	}
	tmpl := append(rootTemplate(t.uri.Object),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
	)
	if _, err := t.ctx.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}, tmpl); err != nil {
		return false, fmt.Errorf("PKCS#11 token %s: generate the root key: %w", &t.uri, err)
	}
	return true, nil
}

// kdfLabel is the fixed input of the sealing key's derivation: SP 800-108
// counter mode, one block: counter 1 | label | 0x00 | context | L=256.
var kdfLabel = []byte("\x00\x00\x00\x01custody root key\x00sealing key v1\x00\x00\x01\x00")

// SealingKey derives the 32-byte sealing key from the root key in the
// token. ErrNoRootKey means the token has no such key yet.
func (t *Token) SealingKey() ([]byte, error) {
	sh := t.session()
	defer t.release(sh)
	h, err := t.find(sh, rootTemplate(t.uri.Object))
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 token %s: look for the root key: %w", &t.uri, err)
	}
	if h == 0 {
		return nil, fmt.Errorf("PKCS#11 token %s: %w: create it with `custody root-key init --root-key '%s'`", &t.uri, ErrNoRootKey, &t.uri)
	}
	return t.hmac(sh, h, kdfLabel)
}

func (t *Token) hmac(sh pkcs11.SessionHandle, key pkcs11.ObjectHandle, msg []byte) ([]byte, error) {
	if err := t.ctx.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, key); err != nil {
		return nil, fmt.Errorf("PKCS#11 token %s: HMAC with the root key: %w", &t.uri, err)
	}
	out, err := t.ctx.Sign(sh, msg)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 token %s: HMAC with the root key: %w", &t.uri, err)
	}
	if len(out) != 32 {
		return nil, fmt.Errorf("PKCS#11 token %s: HMAC with the root key gave %d bytes, want 32", &t.uri, len(out))
	}
	return out, nil
}

// RootHMAC runs one HMAC with the root key in the token (benchmarks measure
// a token round trip with it).
func (t *Token) RootHMAC(msg []byte) ([]byte, error) {
	sh := t.session()
	defer t.release(sh)
	t.mu.Lock()
	h := t.root
	t.mu.Unlock()
	if h == 0 {
		var err error
		if h, err = t.find(sh, rootTemplate(t.uri.Object)); err != nil || h == 0 {
			return nil, fmt.Errorf("PKCS#11 token %s: no root key (%v)", &t.uri, err)
		}
		t.mu.Lock()
		t.root = h
		t.mu.Unlock()
	}
	return t.hmac(sh, h, msg)
}

// Protection is what the token says about a key object.
type Protection struct {
	Sensitive, Extractable, Token bool
}

// RootProtection reads CKA_SENSITIVE, CKA_EXTRACTABLE and CKA_TOKEN of the
// root key.
func (t *Token) RootProtection() (Protection, error) {
	sh := t.session()
	defer t.release(sh)
	h, err := t.find(sh, rootTemplate(t.uri.Object))
	if err != nil || h == 0 {
		return Protection{}, fmt.Errorf("PKCS#11 token %s: no root key (%v)", &t.uri, err)
	}
	return t.protection(sh, h)
}

func (t *Token) protection(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (Protection, error) {
	attrs, err := t.ctx.GetAttributeValue(sh, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil)})
	if err != nil {
		return Protection{}, err
	}
	b := func(a *pkcs11.Attribute) bool { return len(a.Value) == 1 && a.Value[0] != 0 }
	return Protection{Sensitive: b(attrs[0]), Extractable: b(attrs[1]), Token: b(attrs[2])}, nil
}

// ---- vault keys ----

// Key is a private key held in the token. It is a crypto.Signer and, for
// RSA, a crypto.Decrypter; its private part never leaves the token.
type Key struct {
	t    *Token
	id   []byte
	priv pkcs11.ObjectHandle
	pub  crypto.PublicKey
}

// ID returns the key's CKA_ID in the token.
func (k *Key) ID() []byte { return k.id }

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.pub }

var curveOIDs = map[string]asn1.ObjectIdentifier{
	"P-256": {1, 2, 840, 10045, 3, 1, 7},
	"P-384": {1, 3, 132, 0, 34},
	"P-521": {1, 3, 132, 0, 35},
}

// GenerateRSA generates an RSA key pair in the token (bits 2048, 3072 or
// 4096, exponent 65537); label names it for the token's operators.
func (t *Token) GenerateRSA(label string, bits int) (*Key, error) {
	id := make([]byte, 16)
	rand.Read(id)
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	return t.generatePair(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKK_RSA, id, label, pub, true)
}

// GenerateEC generates an EC key pair on curve crv (P-256, P-384, P-521) in
// the token.
func (t *Token) GenerateEC(label, crv string) (*Key, error) {
	oid, ok := curveOIDs[crv]
	if !ok {
		return nil, fmt.Errorf("curve %s is not supported", crv)
	}
	params, _ := asn1.Marshal(oid)
	id := make([]byte, 16)
	rand.Read(id)
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	return t.generatePair(pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKK_EC, id, label, pub, false)
}

func (t *Token) generatePair(mech, keyType uint, id []byte, label string, pubTmpl []*pkcs11.Attribute, decrypt bool) (*Key, error) {
	privTmpl := privateTemplate(keyType, id, label, decrypt)
	sh := t.session()
	defer t.release(sh)
	_, priv, err := t.ctx.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubTmpl, privTmpl)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 token %s: generate a key pair: %w", &t.uri, err)
	}
	return t.load(sh, id, priv)
}

// privateTemplate is the template of a private key that never leaves the
// token: a private token object, sensitive, not extractable.
func privateTemplate(keyType uint, id []byte, label string, decrypt bool) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, decrypt),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// OpenKey finds the private key with CKA_ID id and reads its public half.
func (t *Token) OpenKey(id []byte) (*Key, error) {
	sh := t.session()
	defer t.release(sh)
	h, err := t.find(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id)})
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 token %s: look for key %x: %w", &t.uri, id, err)
	}
	if h == 0 {
		return nil, fmt.Errorf("PKCS#11 token %s holds no key %x (was the key created in another token?)", &t.uri, id)
	}
	return t.load(sh, id, h)
}

func (t *Token) load(sh pkcs11.SessionHandle, id []byte, priv pkcs11.ObjectHandle) (*Key, error) {
	kt, err := t.ctx.GetAttributeValue(sh, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return nil, err
	}
	k := &Key{t: t, id: id, priv: priv}
	if bytesToUint(kt[0].Value) == pkcs11.CKK_RSA {
		a, err := t.ctx.GetAttributeValue(sh, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
		if err != nil {
			return nil, fmt.Errorf("PKCS#11 token %s: read the public key: %w", &t.uri, err)
		}
		k.pub = &rsa.PublicKey{N: new(big.Int).SetBytes(a[0].Value), E: int(new(big.Int).SetBytes(a[1].Value).Int64())}
		return k, nil
	}
	// EC: the public point lives on the public key object.
	ph, err := t.find(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id)})
	if err != nil || ph == 0 {
		return nil, fmt.Errorf("PKCS#11 token %s: the public half of key %x is missing (%v)", &t.uri, id, err)
	}
	a, err := t.ctx.GetAttributeValue(sh, ph, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil), pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 token %s: read the public key: %w", &t.uri, err)
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(a[0].Value, &oid); err != nil {
		return nil, fmt.Errorf("PKCS#11 token %s: key %x has unreadable EC parameters", &t.uri, id)
	}
	var c elliptic.Curve
	for name, o := range curveOIDs {
		if o.Equal(oid) {
			c = map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[name]
		}
	}
	if c == nil {
		return nil, fmt.Errorf("PKCS#11 token %s: key %x is on a curve Custody does not know", &t.uri, id)
	}
	var point []byte
	if _, err := asn1.Unmarshal(a[1].Value, &point); err != nil {
		point = a[1].Value // some tokens store the bare point
	}
	pk, err := ecdsa.ParseUncompressedPublicKey(c, point)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 token %s: key %x has an unreadable public point: %v", &t.uri, id, err)
	}
	k.pub = pk
	return k, nil
}

func bytesToUint(b []byte) uint {
	var v uint64
	switch len(b) {
	case 8:
		v = binary.NativeEndian.Uint64(b)
	case 4:
		v = uint64(binary.NativeEndian.Uint32(b))
	}
	return uint(v)
}

// DestroyKey deletes both halves of the key with CKA_ID id from the token.
// A key already gone is not an error.
func (t *Token) DestroyKey(id []byte) error {
	sh := t.session()
	defer t.release(sh)
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
		h, err := t.find(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_ID, id)})
		if err != nil {
			return fmt.Errorf("PKCS#11 token %s: look for key %x: %w", &t.uri, id, err)
		}
		if h != 0 {
			if err := t.ctx.DestroyObject(sh, h); err != nil {
				return fmt.Errorf("PKCS#11 token %s: destroy key %x: %w", &t.uri, id, err)
			}
		}
	}
	return nil
}

// KeyProtection reads CKA_SENSITIVE, CKA_EXTRACTABLE and CKA_TOKEN of the
// private half of key id.
func (t *Token) KeyProtection(id []byte) (Protection, error) {
	sh := t.session()
	defer t.release(sh)
	h, err := t.find(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id)})
	if err != nil || h == 0 {
		return Protection{}, fmt.Errorf("no key %x (%v)", id, err)
	}
	return t.protection(sh, h)
}

// ReadPrivateExponent asks the token for CKA_PRIVATE_EXPONENT of key id; a
// sensitive key refuses (tests show that it does).
func (t *Token) ReadPrivateExponent(id []byte) ([]byte, error) {
	sh := t.session()
	defer t.release(sh)
	h, err := t.find(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id)})
	if err != nil || h == 0 {
		return nil, fmt.Errorf("no key %x (%v)", id, err)
	}
	a, err := t.ctx.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, nil)})
	if err != nil {
		return nil, err
	}
	return a[0].Value, nil
}

func (k *Key) run(mech *pkcs11.Mechanism, sign bool, in []byte) ([]byte, error) {
	sh := k.t.session()
	defer k.t.release(sh)
	m := []*pkcs11.Mechanism{mech}
	if sign {
		if err := k.t.ctx.SignInit(sh, m, k.priv); err != nil {
			return nil, err
		}
		return k.t.ctx.Sign(sh, in)
	}
	if err := k.t.ctx.DecryptInit(sh, m, k.priv); err != nil {
		return nil, err
	}
	return k.t.ctx.Decrypt(sh, in)
}

// digestInfo prefixes of PKCS #1 v1.5 signatures (RFC 8017, 9.2 note 1).
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var hashMech = map[crypto.Hash][2]uint{
	crypto.SHA1:   {pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1},
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// Sign signs digest in the token: PKCS #1 v1.5 (opts a crypto.Hash), PSS
// (opts *rsa.PSSOptions, salt as long as the hash) or ECDSA (the signature
// in ASN.1, as crypto.Signer promises).
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("digest is %d bytes, want %d", len(digest), h.Size())
	}
	switch k.pub.(type) {
	case *ecdsa.PublicKey:
		raw, err := k.run(pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), true, digest)
		if err != nil {
			return nil, fmt.Errorf("PKCS#11 ECDSA signature: %w", err)
		}
		n := len(raw) / 2
		return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])})
	}
	hm, ok := hashMech[h]
	if !ok {
		return nil, fmt.Errorf("hash %v is not supported", h)
	}
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return k.run(pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(hm[0], hm[1], uint(h.Size()))), true, digest)
	}
	return k.run(pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), true, append(append([]byte(nil), digestInfo[h]...), digest...))
}

// Decrypt decrypts in the token: OAEP (opts *rsa.OAEPOptions, SHA-1 or
// SHA-256, no label) or PKCS #1 v1.5 (opts *rsa.PKCS1v15DecryptOptions).
func (k *Key) Decrypt(_ io.Reader, ct []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	pub, ok := k.pub.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("an EC key cannot decrypt")
	}
	switch o := opts.(type) {
	case *rsa.PKCS1v15DecryptOptions:
		return k.run(pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), false, ct)
	case *rsa.OAEPOptions:
		if len(o.Label) != 0 || (o.Hash != crypto.SHA1 && o.Hash != crypto.SHA256) {
			return nil, errors.New("only OAEP with SHA-1 or SHA-256 and no label is supported")
		}
		k.t.mu.Lock()
		raw := o.Hash == crypto.SHA256 && k.t.noOAEP256
		k.t.mu.Unlock()
		if !raw {
			hm := hashMech[o.Hash]
			out, err := k.run(pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(hm[0], hm[1], pkcs11.CKZ_DATA_SPECIFIED, nil)), false, ct)
			if err == nil || o.Hash == crypto.SHA1 || !(errors.Is(err, pkcs11.Error(pkcs11.CKR_ARGUMENTS_BAD)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_MECHANISM_PARAM_INVALID)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_MECHANISM_INVALID))) {
				return out, err
			}
			k.t.mu.Lock()
			k.t.noOAEP256 = true
			k.t.mu.Unlock()
		}
		size := (pub.N.BitLen() + 7) / 8
		if len(ct) != size {
			return nil, rsa.ErrDecryption
		}
		em, err := k.run(pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil), false, ct)
		if err != nil {
			return nil, err
		}
		if len(em) < size {
			em = append(make([]byte, size-len(em)), em...)
		}
		return oaepDecode(sha256.New(), em)
	}
	return nil, errors.New("unknown decryption options")
}

// oaepDecode checks and removes OAEP padding (RFC 8017, 7.1.2 step 3, empty
// label) from em, the raw RSA decryption, in constant time like crypto/rsa.
func oaepDecode(h hash.Hash, em []byte) ([]byte, error) {
	hLen := h.Size()
	k := len(em)
	if k < 2*hLen+2 {
		return nil, rsa.ErrDecryption
	}
	h.Reset()
	lHash := h.Sum(nil)
	firstByteIsZero := subtle.ConstantTimeByteEq(em[0], 0)
	seed := append([]byte(nil), em[1:1+hLen]...)
	db := append([]byte(nil), em[1+hLen:]...)
	mgf1XOR(seed, h, db)
	mgf1XOR(db, h, seed)
	lHash2Good := subtle.ConstantTimeCompare(lHash, db[:hLen])
	// The remainder of the plaintext must be zero or more 0x00, followed
	// by 0x01, followed by the message.
	var lookingForIndex, index, invalid int
	lookingForIndex = 1
	rest := db[hLen:]
	for i := 0; i < len(rest); i++ {
		equals0 := subtle.ConstantTimeByteEq(rest[i], 0)
		equals1 := subtle.ConstantTimeByteEq(rest[i], 1)
		index = subtle.ConstantTimeSelect(lookingForIndex&equals1, i, index)
		lookingForIndex = subtle.ConstantTimeSelect(equals1, 0, lookingForIndex)
		invalid = subtle.ConstantTimeSelect(lookingForIndex&^equals0, 1, invalid)
	}
	if firstByteIsZero&lHash2Good&^invalid&^lookingForIndex != 1 {
		return nil, rsa.ErrDecryption
	}
	return rest[index+1:], nil
}

// mgf1XOR XORs out with MGF1(seed) under h.
func mgf1XOR(out []byte, h hash.Hash, seed []byte) {
	var counter [4]byte
	var digest []byte
	done := 0
	for done < len(out) {
		h.Reset()
		h.Write(seed)
		h.Write(counter[:])
		digest = h.Sum(digest[:0])
		for i := 0; i < len(digest) && done < len(out); i++ {
			out[done] ^= digest[i]
			done++
		}
		binary.BigEndian.PutUint32(counter[:], binary.BigEndian.Uint32(counter[:])+1)
	}
}

// ImportRSA puts an RSA private key into the token (sensitive, not
// extractable) with its public half.
func (t *Token) ImportRSA(label string, k *rsa.PrivateKey) (*Key, error) {
	if len(k.Primes) != 2 {
		return nil, errors.New("only two-prime RSA keys can be imported")
	}
	k.Precompute()
	id := make([]byte, 16)
	rand.Read(id)
	e := big.NewInt(int64(k.E)).Bytes()
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, k.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, e),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	priv := append(privateTemplate(pkcs11.CKK_RSA, id, label, true),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, k.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, e),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE_EXPONENT, k.D.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIME_1, k.Primes[0].Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PRIME_2, k.Primes[1].Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_1, k.Precomputed.Dp.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_EXPONENT_2, k.Precomputed.Dq.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_COEFFICIENT, k.Precomputed.Qinv.Bytes()),
	)
	return t.importPair(id, pub, priv)
}

// ImportEC puts an EC private key into the token (sensitive, not
// extractable) with its public half.
func (t *Token) ImportEC(label string, k *ecdsa.PrivateKey) (*Key, error) {
	oid, ok := curveOIDs[k.Curve.Params().Name]
	if !ok {
		return nil, fmt.Errorf("curve %s is not supported", k.Curve.Params().Name)
	}
	params, _ := asn1.Marshal(oid)
	point, err := k.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	pointDER, _ := asn1.Marshal(point)
	scalar, err := k.Bytes()
	if err != nil {
		return nil, err
	}
	id := make([]byte, 16)
	rand.Read(id)
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
		pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, pointDER),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	priv := append(privateTemplate(pkcs11.CKK_EC, id, label, false),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, scalar),
	)
	return t.importPair(id, pub, priv)
}

func (t *Token) importPair(id []byte, pub, priv []*pkcs11.Attribute) (*Key, error) {
	sh := t.session()
	defer t.release(sh)
	ph, err := t.ctx.CreateObject(sh, pub)
	if err != nil {
		return nil, fmt.Errorf("PKCS#11 token %s: import the public key: %w", &t.uri, err)
	}
	h, err := t.ctx.CreateObject(sh, priv)
	if err != nil {
		t.ctx.DestroyObject(sh, ph)
		return nil, fmt.Errorf("PKCS#11 token %s: import the private key: %w", &t.uri, err)
	}
	return t.load(sh, id, h)
}

// KeyIDs lists the CKA_ID of the private keys labelled label.
func (t *Token) KeyIDs(label string) ([][]byte, error) {
	sh := t.session()
	defer t.release(sh)
	if err := t.ctx.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
		return nil, err
	}
	objs, _, err := t.ctx.FindObjects(sh, 1000)
	t.ctx.FindObjectsFinal(sh)
	if err != nil {
		return nil, err
	}
	var ids [][]byte
	for _, o := range objs {
		a, err := t.ctx.GetAttributeValue(sh, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil {
			return nil, err
		}
		ids = append(ids, a[0].Value)
	}
	return ids, nil
}
