package main

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/azscep/azscep/internal/store"
)

// TestRevocationKeepsANewerBuildsProperties: while a deployment rolls (or after a rollback) this build revokes a
// certificate whose record an instance of a newer build gave a property this build does not know. The revocation
// (index, record, generation, key mark: the break-glass CLI runs the admin API's) revokes it and leaves the
// property as the newer build wrote it.
func TestRevocationKeepsANewerBuildsProperties(t *testing.T) {
	st, stEnv := azuriteStore(t)
	env := append([]string{"AZSCEP_MODE=local", "AZSCEP_LOCAL_KEY_DIR=" + newLocalKeyDir(t), "AZSCEP_DEV_ISSUER=true"}, stEnv...)
	in := startInstance(t, env)
	ra := in.raOf(t)
	serial := store.SerialString(in.enrollTo(t, ra, "newer-build").mustSucceed(t, ra).SerialNumber)

	// The newer build's instance records an attestation on the issued record (a merge: what it does not change stays).
	certs := rawTable(t, stEnv, st.TableNames()[0])
	any := azcore.ETagAny
	newer := []byte(`{"PartitionKey":"certs","RowKey":"` + serial + `","Attestation":"tpm-2.0",` +
		`"AttestedAt@odata.type":"Edm.DateTime","AttestedAt":"2027-01-02T03:04:05.0000000Z"}`)
	if _, err := certs.UpdateEntity(t.Context(), newer, &aztables.UpdateEntityOptions{UpdateMode: aztables.UpdateModeMerge, IfMatch: &any}); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := revokeCommand(t.Context(), loadConfig(t, env), slog.New(slog.NewJSONHandler(io.Discard, nil)),
		[]string{"-serial", serial, "-reason", "keyCompromise"}, &out, buildOptions{store: st}); err != nil {
		t.Fatalf("revoke: %v (%s)", err, out.String())
	}
	if rec, err := st.Get(t.Context(), serial); err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != 1 {
		t.Fatalf("record after the revocation: %+v, %v", rec, err)
	}
	resp, err := certs.GetEntity(t.Context(), "certs", serial, nil)
	if err != nil {
		t.Fatal(err)
	}
	var e aztables.EDMEntity
	if err := e.UnmarshalJSON(resp.Value); err != nil {
		t.Fatal(err)
	}
	if e.Properties["Attestation"] != "tpm-2.0" || e.Properties["AttestedAt"] == nil {
		t.Errorf("the revocation dropped the newer build's properties: Attestation %v, AttestedAt %v",
			e.Properties["Attestation"], e.Properties["AttestedAt"])
	}
}

// rawTable is a plain SDK client of the table name, on the connection the test's settings name: the writes of a
// build that is not this one.
func rawTable(t *testing.T, env []string, name string) *aztables.Client {
	t.Helper()
	var conn string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "AZSCEP_TABLES_CONNECTION="); ok {
			conn = v
		}
	}
	var kept []string
	for part := range strings.SplitSeq(conn, ";") {
		if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(part)), "tableprefix=") {
			kept = append(kept, part)
		}
	}
	svc, err := aztables.NewServiceClientFromConnectionString(strings.Join(kept, ";"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc.NewClient(name)
}
