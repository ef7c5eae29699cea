// Package cms encodes the small pieces of CMS (RFC 5652) the CA publishes itself.
package cms

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
)

// Degenerate builds a "certs-only" SignedData (RFC 8894 §3.4, RFC 5652 §5): no content, no signers, the
// certificates and optionally one CRL. SCEP uses it for GetCACert, CertRep payloads and GetCRL; /api/csr for its
// application/pkcs7-mime answer. Only public data goes in, so no key is involved.
func Degenerate(certs []*x509.Certificate, crl []byte) ([]byte, error) {
	var raw []byte
	for _, c := range certs {
		raw = append(raw, c.Raw...)
	}
	type contentInfo struct {
		ContentType asn1.ObjectIdentifier
	}
	sd := struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		ContentInfo      contentInfo
		Certificates     asn1.RawValue `asn1:"optional,tag:0"`
		CRLs             asn1.RawValue `asn1:"optional,tag:1"`
		SignerInfos      asn1.RawValue
	}{
		Version:          1,
		DigestAlgorithms: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true},
		ContentInfo:      contentInfo{ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}},
		SignerInfos:      asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true},
	}
	if len(raw) > 0 {
		sd.Certificates = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: raw}
	}
	if len(crl) > 0 {
		sd.CRLs = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: crl}
	}
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, fmt.Errorf("cms: encoding degenerate SignedData: %w", err)
	}
	return asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2},
		asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}})
}
