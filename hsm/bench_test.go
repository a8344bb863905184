package hsm_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"testing"
	"time"

	"custody/hsm/hsmtest"
	"custody/secret"
)

// alternate runs base and subject in turns of n calls for b.N rounds, so
// that a busy machine slows both alike, and reports each one's time per
// call.
func alternate(b *testing.B, n int, baseName string, base func(), subjectName string, subject func()) {
	var tb, ts time.Duration
	for b.Loop() {
		start := time.Now()
		for range n {
			base()
		}
		tb += time.Since(start)
		start = time.Now()
		for range n {
			subject()
		}
		ts += time.Since(start)
	}
	b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N*n), baseName+"-ns/op")
	b.ReportMetric(float64(ts.Nanoseconds())/float64(b.N*n), subjectName+"-ns/op")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRootSealVsTokenCall compares sealing and opening a 64-byte
// secret under the sealing key in memory (what the server does) with one
// round trip to the token (CKM_SHA256_HMAC with the root key, the cheapest
// call there is): the cost every seal and open would pay if the token
// sealed each value itself.
func BenchmarkRootSealVsTokenCall(b *testing.B) {
	tok := open(b, hsmtest.Token(b))
	if _, err := tok.InitRoot(); err != nil {
		b.Fatal(err)
	}
	key, err := tok.SealingKey()
	if err != nil {
		b.Fatal(err)
	}
	s, _ := secret.NewSealer(key)
	msg := make([]byte, 64)
	aad := []byte("bench")
	alternate(b, 200, "memory-seal+open", func() {
		if _, err := s.Open(s.Seal(msg, aad), aad); err != nil {
			b.Fatal(err)
		}
	}, "token-call", func() {
		if _, err := tok.RootHMAC(msg); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkUnwrapTokenVsMemory compares unwrapping a 32-byte key with an
// RSA-2048 key in the token (RSA-OAEP: CKM_RSA_PKCS_OAEP; RSA-OAEP-256 on
// SoftHSM2: CKM_RSA_X_509 and the padding checked in memory) with
// crypto/rsa on a key in memory.
func BenchmarkUnwrapTokenVsMemory(b *testing.B) {
	tok := open(b, hsmtest.Token(b))
	k, err := tok.GenerateRSA("bench", 2048)
	if err != nil {
		b.Fatal(err)
	}
	soft, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		b.Run(h.String(), func(b *testing.B) {
			newHash := sha1.New
			if h == crypto.SHA256 {
				newHash = sha256.New
			}
			ctToken, _ := rsa.EncryptOAEP(newHash(), rand.Reader, k.Public().(*rsa.PublicKey), make([]byte, 32), nil)
			ctSoft, _ := rsa.EncryptOAEP(newHash(), rand.Reader, &soft.PublicKey, make([]byte, 32), nil)
			alternate(b, 20, "memory", func() {
				if _, err := rsa.DecryptOAEP(newHash(), nil, soft, ctSoft, nil); err != nil {
					b.Fatal(err)
				}
			}, "token", func() {
				if _, err := k.Decrypt(nil, ctToken, &rsa.OAEPOptions{Hash: h}); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
