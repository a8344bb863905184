package batch

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// Stored format of a sealed customer field (version 1):
//
//	0x01 | DEK generation (uint32, big endian) | nonce (12 bytes) | AES-256-GCM ciphertext and tag
//
// The associated data binds the ciphertext to where it is stored, so it
// cannot be moved to another row, field or account:
//
//	"custody/batch/field/v1" | len-prefixed account UID | record kind | record id | field
//
// Every part is prefixed with its length (uint32, big endian), so no two
// different tuples give the same associated data. TestSealedFormatPinned locks
// this format.
const (
	formatV1    byte = 0x01
	headerLen        = 1 + 4 + 12
	dekSize          = 32
	fieldAADTag      = "custody/batch/field/v1"
)

// Ref names where a sealed value is stored: record kind (job, task,
// certificate, ...), record id, and field.
type Ref struct {
	Kind  string
	ID    string
	Field string
}

// DEK is an account's unwrapped data encryption key. It lives only in
// memory.
//
// While a re-encryption moves the account's records to a new DEK, the DEK
// also holds the previous generation: Seal uses the current one, Open
// either, by the generation a ciphertext carries.
type DEK struct {
	gen  uint32
	aead cipher.AEAD
	raw  []byte // kept to rewrap the DEK under a new KEK
	old  *DEK   // the previous generation during a re-encryption, or nil
}

// NewDEK returns a DEK for key material of 32 bytes.
func NewDEK(key []byte, generation uint32) (*DEK, error) {
	if len(key) != dekSize {
		return nil, fmt.Errorf("batch: a DEK is %d bytes, got %d", dekSize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &DEK{gen: generation, aead: aead, raw: append([]byte(nil), key...)}, nil
}

// GenerateDEKBytes returns fresh random DEK material.
func GenerateDEKBytes() []byte {
	k := make([]byte, dekSize)
	if _, err := rand.Read(k); err != nil {
		panic("batch: no randomness: " + err.Error())
	}
	return k
}

// Generation returns the DEK's generation.
func (d *DEK) Generation() uint32 { return d.gen }

// WithOld returns a DEK that seals with d and opens ciphertexts of d's
// generation or of old's. old must be of an older generation.
func (d *DEK) WithOld(old *DEK) *DEK {
	c := *d
	c.old = old
	if old != nil {
		c.old = old.current()
	}
	return &c
}

// current returns d without its previous generation.
func (d *DEK) current() *DEK {
	if d.old == nil {
		return d
	}
	c := *d
	c.old = nil
	return &c
}

// OldGeneration returns the generation of the previous DEK d also opens,
// or 0.
func (d *DEK) OldGeneration() uint32 {
	if d.old == nil {
		return 0
	}
	return d.old.gen
}

// SealedGeneration returns the DEK generation a sealed value carries, or
// false if it is not in a known sealed format.
func SealedGeneration(sealed []byte) (uint32, bool) {
	if len(sealed) < headerLen || sealed[0] != formatV1 {
		return 0, false
	}
	return binary.BigEndian.Uint32(sealed[1:5]), true
}

// GenerationBytes returns a generation as it is stored in a sealed value
// (bytes 1 to 4, big endian), for stores that select by generation.
func GenerationBytes(gen uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, gen)
}

func fieldAAD(accountUID string, ref Ref) []byte {
	parts := []string{fieldAADTag, accountUID, ref.Kind, ref.ID, ref.Field}
	n := 0
	for _, p := range parts {
		n += 4 + len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = binary.BigEndian.AppendUint32(out, uint32(len(p)))
		out = append(out, p...)
	}
	return out
}

// Seal encrypts plaintext for the field ref of the account with uid
// accountUID.
func (d *DEK) Seal(accountUID string, ref Ref, plaintext []byte) []byte {
	out := make([]byte, headerLen, headerLen+len(plaintext)+d.aead.Overhead())
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:5], d.gen)
	if _, err := rand.Read(out[5:headerLen]); err != nil {
		panic("batch: no randomness: " + err.Error())
	}
	return d.aead.Seal(out, out[5:headerLen], plaintext, fieldAAD(accountUID, ref))
}

// ErrFieldAuth is returned when a sealed field does not authenticate:
// tampered, moved from another row or account, or sealed under another DEK.
var ErrFieldAuth = errors.New("batch: sealed field failed authentication")

// Open decrypts a value produced by Seal for the same account and ref.
func (d *DEK) Open(accountUID string, ref Ref, sealed []byte) ([]byte, error) {
	if len(sealed) < headerLen+d.aead.Overhead() || sealed[0] != formatV1 {
		return nil, fmt.Errorf("batch: %s %s field %s is not in a known sealed format", ref.Kind, ref.ID, ref.Field)
	}
	gen := binary.BigEndian.Uint32(sealed[1:5])
	if gen != d.gen && d.old != nil && gen == d.old.gen {
		return d.old.Open(accountUID, ref, sealed)
	}
	if gen != d.gen {
		return nil, fmt.Errorf("batch: %s %s field %s was sealed under DEK generation %d, the account's DEK is generation %d", ref.Kind, ref.ID, ref.Field, gen, d.gen)
	}
	pt, err := d.aead.Open(nil, sealed[5:headerLen], sealed[headerLen:], fieldAAD(accountUID, ref))
	if err != nil {
		return nil, ErrFieldAuth
	}
	return pt, nil
}
