package batch

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"

	"software.sslmate.com/src/go-pkcs12"
)

// MaxPFXIterations bounds the key derivation iterations a PFX file may ask
// for (its MAC and its encrypted parts). Tools write 2,000 to 10,000;
// the bound keeps a hostile file from holding a CPU for minutes.
const MaxPFXIterations = 1 << 20

// errPFXIterations reports a PFX file whose iteration counts exceed
// MaxPFXIterations.
var errPFXIterations = errors.New("pfx iteration count too large")

// decodePFX returns the certificate of a PKCS#12 (pfx) file that holds one
// private key and its certificate, opened with password.
func decodePFX(der []byte, password string) (*x509.Certificate, error) {
	if err := checkPFXIterations(der, 0); err != nil {
		return nil, err
	}
	_, cert, _, err := pkcs12.DecodeChain(der, password)
	if err != nil {
		return nil, err
	}
	return cert, nil
}

// checkPFXIterations walks the DER of a PFX file outside its encrypted
// parts (descending into octet strings that hold DER) and refuses an
// iteration count above MaxPFXIterations. Iteration counts follow a salt:
// an INTEGER directly after an OCTET STRING (PKCS#5 PBE parameters, PBKDF2
// parameters, MacData), or after a salt given as an algorithm identifier.
func checkPFXIterations(der []byte, depth int) error {
	if depth > 16 {
		return errors.New("pfx nested too deeply")
	}
	for len(der) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(der, &v)
		if err != nil {
			return err
		}
		if err := checkPFXValue(v, depth); err != nil {
			return err
		}
		der = rest
	}
	return nil
}

func checkPFXValue(v asn1.RawValue, depth int) error {
	switch {
	case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString && !v.IsCompound:
		// Octet strings that hold DER (content infos, safe contents) are
		// walked too; others (salts, ciphertext, digests) are skipped.
		if err := checkPFXIterations(v.Bytes, depth+1); errors.Is(err, errPFXIterations) {
			return err
		}
		return nil
	case !v.IsCompound:
		return nil
	}
	var prev *asn1.RawValue
	i := 0
	for b := v.Bytes; len(b) > 0; i++ {
		var c asn1.RawValue
		rest, err := asn1.Unmarshal(b, &c)
		if err != nil {
			return err
		}
		if c.Class == asn1.ClassUniversal && c.Tag == asn1.TagInteger && prev != nil && prev.Class == asn1.ClassUniversal &&
			(prev.Tag == asn1.TagOctetString || (i == 1 && prev.Tag == asn1.TagSequence)) {
			n := new(big.Int).SetBytes(c.Bytes)
			if len(c.Bytes) > 0 && c.Bytes[0]&0x80 != 0 || n.Cmp(big.NewInt(MaxPFXIterations)) > 0 {
				return errPFXIterations
			}
		}
		if err := checkPFXValue(c, depth+1); err != nil {
			return err
		}
		prev = &c
		b = rest
	}
	return nil
}

// decodeCER returns the X.509 certificate of DER or PEM data.
func decodeCER(data []byte) (*x509.Certificate, error) {
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "CERTIFICATE" {
			return nil, errors.New("pem block is not a certificate")
		}
		data = b.Bytes
	}
	return x509.ParseCertificate(data)
}
