package tables_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/azuritetest"
	"github.com/azscep/azscep/internal/store/tables"
)

// Behaviour of Azure Table Storage that Azurite does not show, answered by a test transport as Azure answers it.

// azureAnswer is an error answer in the service's JSON form, with the x-ms-error-code header the SDK reads.
func azureAnswer(req *http.Request, status int, code, message string) *http.Response {
	body := fmt.Sprintf(`{"odata.error":{"code":%q,"message":{"lang":"en-US","value":%q}}}`, code,
		message+"\nRequestId:00000000-0000-0000-0000-000000000000\nTime:2026-12-07T00:00:00.0000000Z")
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json;odata=minimalmetadata;streaming=true;charset=utf-8"},
			"X-Ms-Error-Code": {code}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}
}

// tableBeingDeleted answers the creation of every table whose name ends in suffix as Azure does for a table deleted
// less than some 40 seconds ago: 409 TableBeingDeleted. The table does not exist meanwhile (Azurite, which never
// had it, answers its calls with 404 TableNotFound, as Azure does).
type tableBeingDeleted struct{ suffix string }

func (d tableBeingDeleted) Do(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/Tables") && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		var t struct{ TableName string }
		if json.Unmarshal(body, &t) == nil && strings.HasSuffix(t.TableName, d.suffix) {
			return azureAnswer(req, http.StatusConflict, "TableBeingDeleted", "The specified table is being deleted. Try operation later."), nil
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	return http.DefaultTransport.RoundTrip(req)
}

// An operator who deleted the tables to start afresh and restarts the app within the service's 40 seconds gets
// 409 TableBeingDeleted for CreateTable. That is not "the table exists": EnsureTables must fail as an outage (the
// start-up is retried), not report the tables ready while every later call meets a missing table.
func TestEnsureTablesWhileATableIsBeingDeleted(t *testing.T) {
	t.Parallel()
	s, err := tables.NewFromConnectionString(azuritetest.ConnectionString(t), "", tables.WithTransport(tableBeingDeleted{tables.TableCerts}))
	if err != nil {
		t.Fatal(err)
	}
	err = s.EnsureTables(t.Context())
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrExists) || !strings.Contains(err.Error(), "TableBeingDeleted") {
		t.Errorf("EnsureTables while the certs table is being deleted = %v, want unavailable, naming TableBeingDeleted", err)
	}
}
