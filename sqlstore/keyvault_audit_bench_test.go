package sqlstore_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"custody/keyvault"
	"custody/sqlstore"
)

// BenchmarkAppendAuditBatch stores audit records in batches of 1 and 4 (the
// sizes the key vault's group commit sees under load) on SQLite: the cost
// of one commit, per record.
func BenchmarkAppendAuditBatch(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			ctx := context.Background()
			db, err := sqlstore.Open(ctx, filepath.Join(b.TempDir(), "custody.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			keys := &sqlstore.KeyStore{DB: db}
			batch := make([]*keyvault.AuditRecord, n)
			b.ResetTimer()
			for range b.N {
				for i := range batch {
					batch[i] = &keyvault.AuditRecord{Time: time.Now(), CallerOID: "00000000-0000-0000-0000-000000000001", VaultName: "kv", KeyName: "k",
						Version: "0123456789abcdef0123456789abcdef", Operation: "KeyUnwrap", Outcome: "success"}
				}
				if err := keys.AppendAuditBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/record")
		})
	}
}
