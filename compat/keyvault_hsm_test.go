package compat_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"custody/hsm"
	"custody/hsm/hsmtest"
	"custody/secret"
	"custody/server"
	"custody/server/servertest"
)

// hsmServer starts a server whose root key is in a new SoftHSM2 token, and
// returns it with the token (opened by the test, to look at its objects).
func hsmServer(t *testing.T) (*servertest.TestServer, *hsm.Token, string) {
	t.Helper()
	uri := hsmtest.Token(t)
	if _, err := secret.InitTokenRoot(uri); err != nil {
		t.Fatal(err)
	}
	ts := servertest.New(t, func(c *server.Config) { c.RootKey = uri })
	u, _ := hsm.ParseURI(uri)
	tok, err := hsm.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tok.Close)
	return ts, tok, uri
}

// tokenKey returns the id of the one private key the server made in the
// token for vault/name, and checks it cannot leave the token.
func tokenKey(t *testing.T, tok *hsm.Token, vault, name string) []byte {
	t.Helper()
	ids, err := tok.KeyIDs("custody/" + vault + "/" + name)
	if err != nil || len(ids) != 1 {
		t.Fatalf("keys of %s/%s in the token: %d, %v; want 1", vault, name, len(ids), err)
	}
	p, err := tok.KeyProtection(ids[0])
	if err != nil || !p.Sensitive || p.Extractable || !p.Token {
		t.Fatalf("%s/%s in the token: %+v, %v; want a sensitive, non-extractable token object", vault, name, p, err)
	}
	if v, err := tok.ReadPrivateExponent(ids[0]); err == nil {
		t.Fatalf("%s/%s: the token gave out CKA_PRIVATE_EXPONENT (%d bytes)", vault, name, len(v))
	}
	return ids[0]
}

// TestKeyVaultHSMKeys runs RSA-HSM and EC-HSM keys on a server whose root
// key is in a PKCS#11 token (SoftHSM2) with the azkeys client: they are
// generated or imported into the token, wrap and unwrap (and every other
// operation) run there, their private parts cannot be read from the token
// nor appear in their JSON Web Keys or the database, a backup is refused,
// a purge destroys them in the token, and they work after a restart.
func TestKeyVaultHSMKeys(t *testing.T) {
	ts, tok, uri := hsmServer(t)
	ctx := context.Background()
	tk := adminToken(t, ts)
	MustGroup(t, ts, tk, "rg")
	mustKeyVault(t, ts, "rg", "kv-hsm", vaultSpec{retentionDays: 7, premium: true, policies: map[string][]string{adminObjectID(t, ts): {"all"}}})
	c := keysClient(t, ts, "kv-hsm", adminCredential(t, ts))

	k, err := c.CreateKey(ctx, "rsa-hsm", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr[int32](2048)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *k.Key.Kty != azkeys.KeyTypeRSAHSM || len(k.Key.N) != 256 || k.Key.D != nil || k.Key.P != nil || k.Key.Q != nil || k.Key.DP != nil || k.Key.DQ != nil || k.Key.QI != nil {
		t.Fatalf("RSA-HSM key bundle: %+v", k.Key)
	}
	rsaID := tokenKey(t, tok, "kv-hsm", "rsa-hsm")
	pub := &rsa.PublicKey{N: bigInt(k.Key.N), E: int(bigInt(k.Key.E).Int64())}
	// The token holds the key the vault answers with.
	if tk, err := tok.OpenKey(rsaID); err != nil || tk.Public().(*rsa.PublicKey).N.Cmp(pub.N) != 0 {
		t.Fatalf("the token's key is not the vault's: %v", err)
	}
	roundTrips(t, c, "rsa-hsm", pub)

	for _, crv := range []azkeys.CurveName{azkeys.CurveNameP256, azkeys.CurveNameP384, azkeys.CurveNameP521} {
		name := "ec-hsm-" + strings.ToLower(string(crv))
		k, err := c.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(crv)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if *k.Key.Kty != azkeys.KeyTypeECHSM || k.Key.D != nil {
			t.Fatalf("EC-HSM key bundle: %+v", k.Key)
		}
		tokenKey(t, tok, "kv-hsm", name)
		alg := map[azkeys.CurveName]azkeys.SignatureAlgorithm{azkeys.CurveNameP256: azkeys.SignatureAlgorithmES256,
			azkeys.CurveNameP384: azkeys.SignatureAlgorithmES384, azkeys.CurveNameP521: azkeys.SignatureAlgorithmES512}[crv]
		signVerify(t, c, name, alg)
	}

	// Import as HSM: the key goes into the token, and its signatures
	// verify with the key we hold.
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	imp, err := c.ImportKey(ctx, "imported", azkeys.ImportKeyParameters{HSM: to.Ptr(true), Key: &azkeys.JSONWebKey{
		Kty: to.Ptr(azkeys.KeyTypeRSA), N: priv.N.Bytes(), E: []byte{1, 0, 1}, D: priv.D.Bytes(), P: priv.Primes[0].Bytes(), Q: priv.Primes[1].Bytes()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *imp.Key.Kty != azkeys.KeyTypeRSAHSM || imp.Key.D != nil {
		t.Fatalf("imported HSM key: %+v", imp.Key)
	}
	tokenKey(t, tok, "kv-hsm", "imported")
	digest := sha256.Sum256([]byte("hello"))
	sig, err := c.Sign(ctx, "imported", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest[:]}, nil)
	if err != nil || rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, digest[:], sig.Result) != nil {
		t.Fatalf("sign with the imported HSM key does not verify locally: %v", err)
	}
	roundTrips(t, c, "imported", &priv.PublicKey)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := c.ImportKey(ctx, "imported-ec", azkeys.ImportKeyParameters{HSM: to.Ptr(true), Key: &azkeys.JSONWebKey{
		Kty: to.Ptr(azkeys.KeyTypeEC), Crv: to.Ptr(azkeys.CurveNameP384), D: ecPriv.D.FillBytes(make([]byte, 48)),
		X: ecPriv.X.FillBytes(make([]byte, 48)), Y: ecPriv.Y.FillBytes(make([]byte, 48))}}, nil); err != nil {
		t.Fatal(err)
	}
	tokenKey(t, tok, "kv-hsm", "imported-ec")
	signVerify(t, c, "imported-ec", azkeys.SignatureAlgorithmES384)

	// Rotation makes the new version in the token too.
	if _, err := c.RotateKey(ctx, "rsa-hsm", nil); err != nil {
		t.Fatal(err)
	}
	if ids, _ := tok.KeyIDs("custody/kv-hsm/rsa-hsm"); len(ids) != 2 {
		t.Fatalf("after rotation the token holds %d versions of rsa-hsm, want 2", len(ids))
	}

	// No backup of an HSM key; software keys of the same vault still can.
	_, err = c.BackupKey(ctx, "rsa-hsm", nil)
	wantKVError(t, "backup of an HSM key", err, 400, "BadParameter", "")
	if _, err := c.CreateKey(ctx, "soft", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.BackupKey(ctx, "soft", nil); err != nil {
		t.Fatal(err)
	}
	// A standard vault on this server refuses HSM keys, as Azure does.
	mustKeyVault(t, ts, "rg", "kv-std", vaultSpec{retentionDays: 7, policies: map[string][]string{adminObjectID(t, ts): {"all"}}})
	_, err = keysClient(t, ts, "kv-std", adminCredential(t, ts)).CreateKey(ctx, "x", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	wantKVError(t, "RSA-HSM in a standard vault", err, 400, "BadParameter", "")

	// The imported private key is nowhere in the database files.
	ts.KeyVault.FlushAudit()
	var all []byte
	for _, f := range []string{"custody.db", "custody.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(ts.DataDir(), f))
		all = append(all, b...)
	}
	for _, secretPart := range [][]byte{priv.D.Bytes(), priv.Primes[0].Bytes(), ecPriv.D.FillBytes(make([]byte, 48))} {
		for _, form := range [][]byte{secretPart[:32], []byte(base64.RawURLEncoding.EncodeToString(secretPart)[:40])} {
			if bytes.Contains(all, form) {
				t.Fatal("a private key part imported into the HSM is in the database files")
			}
		}
	}

	// A restart on the same token: the keys work.
	dir := ts.DataDir()
	ts.Stop()
	ts2 := servertest.New(t, func(c *server.Config) { c.RootKey, c.DataDir = uri, dir })
	c2 := keysClient(t, ts2, "kv-hsm", adminCredential(t, ts2))
	wrapped, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, []byte("after restart"), nil)
	un, err := c2.UnwrapKey(ctx, "imported", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: wrapped}, nil)
	if err != nil || string(un.Result) != "after restart" {
		t.Fatalf("unwrap after a restart: %q, %v", un.Result, err)
	}

	// Delete and purge: the key leaves the token.
	if _, err := c2.DeleteKey(ctx, "imported", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.PurgeDeletedKey(ctx, "imported", nil); err != nil {
		t.Fatal(err)
	}
	if ids, err := tok.KeyIDs("custody/kv-hsm/imported"); err != nil || len(ids) != 0 {
		t.Fatalf("after the purge the token holds %d keys of the purged key (%v)", len(ids), err)
	}

	// A root key migration away from the token would strand the HSM keys:
	// refused, nothing changed. To another root key in the same token it
	// goes, and the HSM keys still work.
	ts2.Stop()
	_, err = server.MigrateRootKey(ctx, server.MigrateConfig{DataDir: dir, From: uri, To: filepath.Join(t.TempDir(), "file.key")})
	if err == nil || !strings.Contains(err.Error(), "RSA-HSM or EC-HSM live in the token") {
		t.Fatalf("migration of HSM keys' root to a file: %v", err)
	}
	uri2 := strings.Replace(uri, "object=custody-root", "object=custody-root-2", 1)
	if _, err := secret.InitTokenRoot(uri2); err != nil {
		t.Fatal(err)
	}
	if _, err := server.MigrateRootKey(ctx, server.MigrateConfig{DataDir: dir, From: uri, To: uri2}); err != nil {
		t.Fatalf("migration to another root key in the same token: %v", err)
	}
	ts3 := servertest.New(t, func(c *server.Config) { c.RootKey, c.DataDir = uri2, dir })
	c3 := keysClient(t, ts3, "kv-hsm", adminCredential(t, ts3))
	latest, err := c3.GetKey(ctx, "rsa-hsm", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	roundTrips(t, c3, "rsa-hsm", &rsa.PublicKey{N: bigInt(latest.Key.N), E: int(bigInt(latest.Key.E).Int64())})
}
