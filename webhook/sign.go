package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// signaturePrefix names the signature's algorithm in SignatureHeader.
const signaturePrefix = "sha256="

// Sign returns the value of SignatureHeader for body: "sha256=" followed by
// the lower-case hex HMAC-SHA256 of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify checks header, the value of SignatureHeader a request carried,
// against the request's raw body, for receivers. It compares in constant
// time. It returns nil when header is Sign(secret, body) (the hex may be in
// either case), and an error matching ErrBadSignature when header is
// missing, malformed or does not match, or when secret is empty (an empty
// secret authenticates nothing).
func Verify(secret, body []byte, header string) error {
	switch {
	case len(secret) == 0:
		return fmt.Errorf("%w: the receiver's secret is empty", ErrBadSignature)
	case header == "":
		return fmt.Errorf("%w: missing", ErrBadSignature)
	}
	hexSum, ok := strings.CutPrefix(strings.TrimSpace(header), signaturePrefix)
	if !ok {
		return fmt.Errorf("%w: want %q followed by hex", ErrBadSignature, signaturePrefix)
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: want %d hex digits after %q", ErrBadSignature, 2*sha256.Size, signaturePrefix)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%w: does not match the body", ErrBadSignature)
	}
	return nil
}
