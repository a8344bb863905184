package batch

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
)

// pinnedKey is the DEK of the pinned vector: bytes 0x00..0x1f.
func pinnedKey() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

// The pinned vector: {"commandLine":"echo pinned"} sealed for account UID
// acct-uid-1, task job-1/task-1, field spec, under pinnedKey at DEK
// generation 7. It was produced once by Seal and must keep opening: a change
// to the format, the generation header or the associated data layout breaks
// every stored record.
const (
	pinnedSealed    = "01000000072884ec3b97a3abe885cc20701b5d193b13c5d12c9e3ce7b3571767fbc9bed81a7d2675999dd277f61b4cb1b46095adf1e9e52fe1695ad835fd"
	pinnedPlaintext = `{"commandLine":"echo pinned"}`
	pinnedUID       = "acct-uid-1"
)

var pinnedRef = Ref{Kind: "task", ID: "job-1/task-1", Field: "spec"}

func TestSealedFormatPinned(t *testing.T) {
	d, err := NewDEK(pinnedKey(), 7)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := hex.DecodeString(pinnedSealed)
	if sealed[0] != 0x01 {
		t.Fatalf("format byte = %#x, want 0x01", sealed[0])
	}
	if gen := binary.BigEndian.Uint32(sealed[1:5]); gen != 7 {
		t.Fatalf("generation header = %d, want 7", gen)
	}
	if got, want := len(sealed), 1+4+12+len(pinnedPlaintext)+16; got != want {
		t.Fatalf("sealed length = %d, want %d (header, nonce, ciphertext, tag)", got, want)
	}
	pt, err := d.Open(pinnedUID, pinnedRef, sealed)
	if err != nil {
		t.Fatalf("open pinned vector: %v", err)
	}
	if string(pt) != pinnedPlaintext {
		t.Fatalf("pinned plaintext = %q, want %q", pt, pinnedPlaintext)
	}

	// The associated data layout, written out by hand.
	var want []byte
	for _, p := range []string{"custody/batch/field/v1", pinnedUID, "task", "job-1/task-1", "spec"} {
		want = binary.BigEndian.AppendUint32(want, uint32(len(p)))
		want = append(want, p...)
	}
	if got := fieldAAD(pinnedUID, pinnedRef); !bytes.Equal(got, want) {
		t.Fatalf("associated data = %x, want %x", got, want)
	}
}

func TestSealRoundTripAndFreshNonces(t *testing.T) {
	d, _ := NewDEK(pinnedKey(), 1)
	a := d.Seal("uid", pinnedRef, []byte("secret"))
	b := d.Seal("uid", pinnedRef, []byte("secret"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same value are identical; nonces are not fresh")
	}
	if bytes.Contains(a, []byte("secret")) {
		t.Fatal("sealed value contains the plaintext")
	}
	for _, s := range [][]byte{a, b} {
		if pt, err := d.Open("uid", pinnedRef, s); err != nil || string(pt) != "secret" {
			t.Fatalf("open = %q, %v", pt, err)
		}
	}
}

func TestOpenRefusesMovedOrTamperedValues(t *testing.T) {
	d, _ := NewDEK(pinnedKey(), 7)
	sealed, _ := hex.DecodeString(pinnedSealed)
	other, _ := NewDEK(bytes.Repeat([]byte{0xaa}, 32), 7)
	flip := func(i int) []byte {
		s := bytes.Clone(sealed)
		s[i] ^= 0x01
		return s
	}
	tests := []struct {
		desc string
		dek  *DEK
		uid  string
		ref  Ref
		in   []byte
		auth bool // the failure is an authentication failure
	}{
		{"another account", d, "acct-uid-2", pinnedRef, sealed, true},
		{"another record kind", d, pinnedUID, Ref{Kind: "job", ID: pinnedRef.ID, Field: "spec"}, sealed, true},
		{"another record id", d, pinnedUID, Ref{Kind: "task", ID: "job-1/task-2", Field: "spec"}, sealed, true},
		{"another job's task of the same id", d, pinnedUID, Ref{Kind: "task", ID: "job-2/task-1", Field: "spec"}, sealed, true},
		{"another field", d, pinnedUID, Ref{Kind: "task", ID: pinnedRef.ID, Field: "password"}, sealed, true},
		{"ambiguous split of the same bytes", d, pinnedUID + "task", Ref{Kind: "", ID: pinnedRef.ID, Field: "spec"}, sealed, true},
		{"another DEK", other, pinnedUID, pinnedRef, sealed, true},
		{"flipped nonce bit", d, pinnedUID, pinnedRef, flip(6), true},
		{"flipped ciphertext bit", d, pinnedUID, pinnedRef, flip(20), true},
		{"flipped tag bit", d, pinnedUID, pinnedRef, flip(len(sealed) - 1), true},
		{"truncated", d, pinnedUID, pinnedRef, sealed[:len(sealed)-1], true},
		{"unknown format version", d, pinnedUID, pinnedRef, flip(0), false},
		{"other generation", d, pinnedUID, pinnedRef, flip(4), false},
		{"too short", d, pinnedUID, pinnedRef, sealed[:10], false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			pt, err := tt.dek.Open(tt.uid, tt.ref, tt.in)
			if err == nil {
				t.Fatalf("open succeeded with %q", pt)
			}
			if tt.auth && !errors.Is(err, ErrFieldAuth) {
				t.Fatalf("error = %v, want ErrFieldAuth", err)
			}
		})
	}
}

// TestDEKWithOld checks the DEK of an account being re-encrypted: it seals
// with the current generation only, opens values of both generations (the
// pinned vector of generation 7 among them), refuses any other generation,
// and without its old generation opens the current one only.
func TestDEKWithOld(t *testing.T) {
	old, err := NewDEK(pinnedKey(), 7)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := NewDEK(GenerateDEKBytes(), 8)
	if err != nil {
		t.Fatal(err)
	}
	both := cur.WithOld(old)
	if both.Generation() != 8 || both.OldGeneration() != 7 || cur.OldGeneration() != 0 {
		t.Fatalf("generations: %d, old %d (the DEK it came from: old %d)", both.Generation(), both.OldGeneration(), cur.OldGeneration())
	}
	pinned, _ := hex.DecodeString(pinnedSealed)
	if pt, err := both.Open(pinnedUID, pinnedRef, pinned); err != nil || string(pt) != pinnedPlaintext {
		t.Fatalf("open a value of the old generation = %q, %v", pt, err)
	}
	sealed := both.Seal(pinnedUID, pinnedRef, []byte("new"))
	if g, ok := SealedGeneration(sealed); !ok || g != 8 {
		t.Fatalf("Seal used generation %d (%v), want 8", g, ok)
	}
	if pt, err := cur.Open(pinnedUID, pinnedRef, sealed); err != nil || string(pt) != "new" {
		t.Fatalf("the current DEK alone opens = %q, %v", pt, err)
	}
	if _, err := cur.Open(pinnedUID, pinnedRef, pinned); err == nil {
		t.Fatal("the current DEK alone opened a value of the old generation")
	}
	if _, err := both.current().Open(pinnedUID, pinnedRef, pinned); err == nil {
		t.Fatal("the DEK without its old generation opened a value of the old generation")
	}
	other, _ := NewDEK(GenerateDEKBytes(), 6)
	if _, err := both.Open(pinnedUID, pinnedRef, other.Seal(pinnedUID, pinnedRef, []byte("x"))); err == nil {
		t.Fatal("a value of generation 6 opened with generations 8 and 7")
	}
	// A value of the old generation moved to another field still fails.
	if _, err := both.Open(pinnedUID, Ref{Kind: "task", ID: "job-1/task-2", Field: "spec"}, pinned); !errors.Is(err, ErrFieldAuth) {
		t.Fatalf("moved value: %v, want ErrFieldAuth", err)
	}
	if !bytes.Equal(GenerationBytes(8), sealed[1:5]) {
		t.Fatalf("GenerationBytes(8) = %x, stored %x", GenerationBytes(8), sealed[1:5])
	}
}
