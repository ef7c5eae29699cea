package scep_test
import ("testing";"net/url";"crypto/x509";"crypto/x509/pkix";"github.com/azscep/azscep/internal/testca";"github.com/azscep/azscep/internal/policy")
func TestDbg(t *testing.T){
	k := testca.RSAKey(t,0)
	sid := testca.IntuneSIDURI("S-1-5-21-1004336348-1177238915-682003330-512")
	csr := testca.CSR(t, k, testca.CSROptions{Subject: pkix.Name{CommonName: "names"}, ChallengePassword: staticSecret,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{sid}, UPNs: []string{"adele@contoso.example"}, Emails: []string{"adele@contoso.example"}})
	_, err := policy.ParseCSR(csr.Raw); t.Log(err)
	_, err = policy.Check(csr, testProfile(t)); t.Log(err)
}
