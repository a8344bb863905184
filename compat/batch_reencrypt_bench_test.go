package compat_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"net/http"
	"sort"
	"testing"
	"time"

	"custody/server"
	"custody/server/servertest"
	"custody/sqlstore/sqlstoretest"
)

// rawGCMRate opens and re-seals values of the given sizes with AES-256-GCM
// (crypto/cipher, one goroutine, as the walk) and returns values a second.
func rawGCMRate(b *testing.B, sizes []int) float64 {
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	// Each value is stored as nonce | ciphertext, as the sealed format.
	ns := gcm.NonceSize()
	aad := make([]byte, 80)
	sealed := make([][]byte, len(sizes))
	for i, n := range sizes {
		nonce := make([]byte, ns)
		rand.Read(nonce)
		sealed[i] = gcm.Seal(nonce, nonce, make([]byte, n), aad)
	}
	start := time.Now()
	for i, s := range sealed {
		pt, err := gcm.Open(nil, s[:ns], s[ns:], aad)
		if err != nil {
			b.Fatal(err)
		}
		nonce := make([]byte, ns, ns+len(pt)+gcm.Overhead())
		rand.Read(nonce)
		sealed[i] = gcm.Seal(nonce, nonce, pt, aad)
	}
	return float64(len(sizes)) / time.Since(start).Seconds()
}

// BenchmarkReencryption re-encrypts an account holding 100,000 tasks (and
// its job) and reports the walk's rate (records re-sealed a second, from
// the request to the last record, through the API's progress), the time to
// the old DEK's deletion, and, measured alternately in the same run, the
// raw AES-GCM open+seal rate of this machine on values of the same sizes.
// With CUSTODY_TEST_POSTGRES set, BenchmarkReencryptionPostgres does the
// same on PostgreSQL. Run:
//
//	go test -run '^$' -bench 'Reencryption$' -benchtime 3x ./compat/
func BenchmarkReencryption(b *testing.B) { benchReencryption(b, "") }

func BenchmarkReencryptionPostgres(b *testing.B) {
	benchReencryption(b, sqlstoretest.NewSchema(b, "compat_bench_"))
}

func benchReencryption(b *testing.B, database string) {
	const n = 100000
	ts := servertest.New(b, func(c *server.Config) {
		c.DisableLocalNodes = true
		c.ReencryptSettle = 200 * time.Millisecond
		if database != "" {
			c.Database = database
		}
	})
	tok := adminToken(b, ts)
	mustBatchAccount(b, ts, "rg-rebench", "rebench")
	fillTasks(b, ts, "rebench", n)
	var sizes []int
	rows, err := ts.DB.SQL().Query(`SELECT length(spec) FROM batch_tasks WHERE account_key = 'rebench'`)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var l int
		if err := rows.Scan(&l); err != nil {
			b.Fatal(err)
		}
		sizes = append(sizes, l-17-16) // header and tag
	}
	rows.Close()
	path := batchAccountPath(ts, "rg-rebench", "rebench") + "/reencrypt?api-version=" + batchAPIVersion
	var walk, finish, raw []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw = append(raw, rawGCMRate(b, sizes))
		start := time.Now()
		if r := MustARM(b, ts, tok, "POST", path, ""); r.Status != http.StatusAccepted {
			b.Fatalf("POST reencrypt: %d %s", r.Status, r.Body)
		}
		var walked time.Duration
		for {
			st := reencryptionOf(b, ts, tok, "rg-rebench", "rebench")
			if walked == 0 && st.RecordsDone >= st.RecordsTotal {
				walked = time.Since(start)
			}
			if st.Status == "Succeeded" {
				if st.RecordsTotal != n+1 {
					b.Fatalf("re-encrypted %d records, want %d", st.RecordsTotal, n+1)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		finish = append(finish, time.Since(start).Seconds())
		walk = append(walk, float64(n+1)/walked.Seconds())
		raw = append(raw, rawGCMRate(b, sizes))
	}
	b.StopTimer()
	med := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	b.ReportMetric(med(walk), "records/s")
	b.ReportMetric(med(raw), "raw-gcm-open+seal/s")
	b.ReportMetric(med(finish), "s-to-old-DEK-deleted")
	b.Logf("%d records: walk %.0f records/s, raw AES-GCM open+seal %.0f/s (ratio %.3f), old DEK deleted %.2f s after the request (median of %d)",
		n+1, med(walk), med(raw), med(walk)/med(raw), med(finish), b.N)
}
