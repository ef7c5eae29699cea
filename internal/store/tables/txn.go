package tables

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// The SDK's SubmitTransaction reports neither the ETags of the entities it wrote nor which operation failed and
// why (a failed entity-group transaction is a 202 whose body holds the failing operation's status). Both matter
// here: the record's ETag conditions the issued update that follows, and a failure must be told apart as a bound
// key (409 on the binding), a serial collision (409 on the record), a moved binding (412) or an unbound key (404).
// captureTransport keeps a copy of the raw $batch response for the call whose context asks for it, and
// parseBatch reads it, so the transaction stays one round trip with nothing read back.

type captureKey struct{}

// batchCapture receives the last $batch response of one call (the retry policy sits above the transport, so a
// retried transaction leaves the final attempt's answer here).
type batchCapture struct {
	status      int
	contentType string
	body        []byte
}

type captureTransport struct {
	inner policy.Transporter
}

func (t captureTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.Do(req)
	c, _ := req.Context().Value(captureKey{}).(*batchCapture)
	if err != nil || c == nil || !strings.HasSuffix(req.URL.Path, "/$batch") {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		return nil, fmt.Errorf("reading transaction response: %w", rerr)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	c.status, c.contentType, c.body = resp.StatusCode, resp.Header.Get("Content-Type"), body
	return resp, nil
}

// opResult is the service's answer to one operation of a transaction.
type opResult struct {
	status int
	etag   string
	code   string // the error code of a failed operation
	index  int    // a failed operation's position in the transaction, -1 when the answer does not say
}

// parseBatch reads a $batch response: one changeset with one response per operation on success, or the failing
// operation's response alone on failure.
func parseBatch(contentType string, body []byte) ([]opResult, error) {
	parts, err := multipartParts(contentType, body)
	if err != nil {
		return nil, fmt.Errorf("batch response: %w", err)
	}
	if len(parts) != 1 {
		return nil, fmt.Errorf("batch response has %d parts, want one changeset", len(parts))
	}
	ops, err := multipartParts(parts[0].contentType, parts[0].body)
	if err != nil {
		return nil, fmt.Errorf("changeset response: %w", err)
	}
	var out []opResult
	for _, op := range ops {
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(op.body)), nil)
		if err != nil {
			return nil, fmt.Errorf("changeset response: %w", err)
		}
		r := opResult{status: resp.StatusCode, etag: resp.Header.Get("ETag"), code: resp.Header.Get("x-ms-error-code"), index: -1}
		if r.status >= 300 {
			r.code, r.index = failedOperation(resp, r.code)
		}
		_ = resp.Body.Close()
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("changeset response holds no operation")
	}
	return out, nil
}

// failedOperation reads a failed operation's OData error: its code, and its position in the transaction, which
// the service puts in front of the message ("2:The specified entity already exists.").
func failedOperation(resp *http.Response, code string) (string, int) {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message struct {
				Value string `json:"value"`
			} `json:"message"`
		} `json:"odata.error"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) != nil {
		return code, -1
	}
	if code == "" {
		code = body.Error.Code
	}
	n, _, ok := strings.Cut(body.Error.Message.Value, ":")
	i, err := strconv.Atoi(n)
	if !ok || err != nil || i < 0 {
		return code, -1
	}
	return code, i
}

type mimePart struct {
	contentType string
	body        []byte
}

func multipartParts(contentType string, body []byte) ([]mimePart, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return nil, fmt.Errorf("content type %q is not multipart", contentType)
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []mimePart
	for {
		p, err := r.NextPart()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		out = append(out, mimePart{contentType: p.Header.Get("Content-Type"), body: b})
	}
}

// transact submits actions as one entity-group transaction on c and returns each operation's result, or the
// failed operation's result alone. A transaction the service refused as a whole, or whose answer cannot be read,
// is an error for mapErr.
func (s *Store) transact(ctx context.Context, c *aztables.Client, actions []aztables.TransactionAction) ([]opResult, error) {
	capture := &batchCapture{}
	_, err := c.SubmitTransaction(context.WithValue(ctx, captureKey{}, capture), actions, nil)
	var re *azcore.ResponseError
	if err != nil && !(errors.As(err, &re) && re.StatusCode == http.StatusAccepted) {
		return nil, err
	}
	if capture.status != http.StatusAccepted {
		return nil, fmt.Errorf("transaction answered HTTP %d", capture.status)
	}
	return parseBatch(capture.contentType, capture.body)
}
