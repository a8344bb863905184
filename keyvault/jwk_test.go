package keyvault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"

	"custody"
)

func rsaJWK(t testing.TB, bits int) (*rsa.PrivateKey, []byte) {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	priv.Precompute()
	j := JSONWebKey{Kty: "RSA-HSM", N: priv.N.Bytes(), E: []byte{1, 0, 1}, D: priv.D.Bytes(), P: priv.Primes[0].Bytes(), Q: priv.Primes[1].Bytes(),
		DP: priv.Precomputed.Dp.Bytes(), DQ: priv.Precomputed.Dq.Bytes(), QI: priv.Precomputed.Qinv.Bytes(), KeyOps: []string{"wrapKey"}}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	return priv, b
}

func TestParseJWKRSA(t *testing.T) {
	priv, b := rsaJWK(t, 2048)
	if strings.Contains(string(b), "=") {
		t.Fatalf("JWK encoding is padded: %s", b)
	}
	j, got, err := ParseJWK(b)
	if err != nil {
		t.Fatalf("ParseJWK = %v, want nil", err)
	}
	if j.Kty != "RSA-HSM" || !got.(*rsa.PrivateKey).Equal(priv) {
		t.Fatalf("ParseJWK gave kty %s and a different key", j.Kty)
	}
	pub := publicJWK("RSA", got, nil)
	if pub.D != nil || pub.P != nil || string(pub.E) != "\x01\x00\x01" {
		t.Fatalf("publicJWK leaks private parts or has a wrong e: %+v", pub)
	}
}

func TestParseJWKEC(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		priv, _ := ecdsa.GenerateKey(c, rand.Reader)
		size := (c.Params().BitSize + 7) / 8
		j := JSONWebKey{Kty: "EC", Crv: c.Params().Name, D: priv.D.FillBytes(make([]byte, size)), X: priv.X.FillBytes(make([]byte, size)), Y: priv.Y.FillBytes(make([]byte, size))}
		b, _ := json.Marshal(j)
		_, got, err := ParseJWK(b)
		if err != nil {
			t.Fatalf("%s: ParseJWK = %v, want nil", c.Params().Name, err)
		}
		if !got.(*ecdsa.PrivateKey).Equal(priv) {
			t.Fatalf("%s: parsed key differs", c.Params().Name)
		}
		j.X[0] ^= 1
		b, _ = json.Marshal(j)
		if _, _, err := ParseJWK(b); custody.ErrorKind(err) != custody.KindInvalid {
			t.Fatalf("%s: ParseJWK with a wrong x = %v, want BadParameter", c.Params().Name, err)
		}
	}
}

func TestParseJWKRejects(t *testing.T) {
	priv, _ := rsaJWK(t, 2048)
	good := JSONWebKey{Kty: "RSA", N: priv.N.Bytes(), E: []byte{1, 0, 1}, D: priv.D.Bytes(), P: priv.Primes[0].Bytes(), Q: priv.Primes[1].Bytes()}
	cases := map[string]func(j *JSONWebKey){
		"oct":           func(j *JSONWebKey) { j.Kty = "oct" },
		"no d":          func(j *JSONWebKey) { j.D = nil },
		"wrong d":       func(j *JSONWebKey) { j.D = append([]byte{}, j.P...) },
		"swapped q":     func(j *JSONWebKey) { j.Q = j.P },
		"even e":        func(j *JSONWebKey) { j.E = []byte{2} },
		"huge e":        func(j *JSONWebKey) { j.E = []byte{1, 1, 1, 1, 1} },
		"short n":       func(j *JSONWebKey) { j.N = j.N[:64] },
		"hsm blob":      func(j *JSONWebKey) { j.T = []byte{1} },
		"unknown curve": func(j *JSONWebKey) { *j = JSONWebKey{Kty: "EC", Crv: "P-256K", D: []byte{1}} },
		"EC no d":       func(j *JSONWebKey) { *j = JSONWebKey{Kty: "EC", Crv: "P-256"} },
		"EC zero d":     func(j *JSONWebKey) { *j = JSONWebKey{Kty: "EC", Crv: "P-256", D: make([]byte, 32)} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			j := good
			mutate(&j)
			b, _ := json.Marshal(j)
			if _, _, err := ParseJWK(b); custody.ErrorKind(err) != custody.KindInvalid {
				t.Fatalf("ParseJWK = %v, want a BadParameter error", err)
			}
		})
	}
	for _, raw := range []string{`{"kty":"RSA","n":"!!"}`, `{"kty":5}`, `[`, `{"kty":"RSA","e":"AQAB","n":null}`} {
		if _, _, err := ParseJWK([]byte(raw)); custody.ErrorKind(err) != custody.KindInvalid {
			t.Fatalf("ParseJWK(%s) = %v, want a BadParameter error", raw, err)
		}
	}
}

func TestBytesAcceptsPaddedAndStandardBase64(t *testing.T) {
	for _, in := range []string{`"-_8"`, `"-_8="`, `"+/8="`, `"+/8"`} {
		var b Bytes
		if err := json.Unmarshal([]byte(in), &b); err != nil || string(b) != "\xfb\xff" {
			t.Fatalf("Unmarshal(%s) = %x, %v; want fbff", in, []byte(b), err)
		}
	}
	out, _ := json.Marshal(Bytes{0xfb, 0xff})
	if string(out) != `"-_8"` {
		t.Fatalf("Marshal = %s, want \"-_8\"", out)
	}
}

// FuzzParseJWK checks that no input makes the parser panic, and that a key
// it accepts is consistent (its public part round-trips).
func FuzzParseJWK(f *testing.F) {
	_, b := rsaJWK(f, 2048)
	f.Add(b)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec, _ := json.Marshal(JSONWebKey{Kty: "EC-HSM", Crv: "P-256", D: priv.D.FillBytes(make([]byte, 32))})
	f.Add(ec)
	for _, s := range []string{`{}`, `{"kty":"RSA"}`, `{"kty":"EC","crv":"P-521","d":"AQ"}`, `{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQ","p":"Aw","q":"BQ"}`, `null`, `{"kty":"oct","k":"AA"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		j, key, err := ParseJWK(data)
		if err != nil {
			if custody.ErrorKind(err) != custody.KindInvalid {
				t.Fatalf("ParseJWK error of kind %v: %v", custody.ErrorKind(err), err)
			}
			return
		}
		pub := publicJWK(j.Kty, key, nil)
		if _, err := pub.publicKey(); err != nil {
			t.Fatalf("accepted key's public part does not parse: %v", err)
		}
	})
}
