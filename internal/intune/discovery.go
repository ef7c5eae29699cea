package intune

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/azscep/azscep/internal/transport"
)

// discovery caches the Graph endpoints list of the Intune service principal
// (§4). The list is fetched lazily, by one goroutine at a time (callers
// arriving meanwhile wait for that fetch), and dropped when a POST hits a
// connection error or a 404, when it is older than ttl, or — at most once per
// missRefresh — when a needed service is missing from it.
type discovery struct {
	c           *Client
	ttl         time.Duration
	missRefresh time.Duration

	mu       sync.Mutex
	services map[string]string // lower-case providerName → uri without trailing '/'
	fetched  time.Time
	inflight *discoveryCall
}

type discoveryCall struct {
	done chan struct{}
	err  error
	// canceled: the leader's own context ended, so err says nothing about
	// Graph and waiters should try again rather than inherit it.
	canceled bool
}

// lookup returns the base URI of service, discovering it if needed.
func (d *discovery) lookup(ctx context.Context, service string) (string, error) {
	key := strings.ToLower(service)
	for {
		d.mu.Lock()
		if d.services != nil {
			age := d.c.now().Sub(d.fetched)
			if age < d.ttl {
				if uri, ok := d.services[key]; ok {
					d.mu.Unlock()
					return uri, nil
				}
				if age < d.missRefresh {
					d.mu.Unlock()
					return "", fmt.Errorf("%w: %q", ErrServiceNotFound, service)
				}
			}
		}
		if call := d.inflight; call != nil {
			d.mu.Unlock()
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("%w: waiting for service discovery: %w", ErrUnavailable, ctx.Err())
			case <-call.done:
			}
			// Look again (and maybe lead a new fetch) unless the leader
			// learned something about Graph.
			if call.err != nil && !call.canceled {
				return "", call.err
			}
			continue
		}
		call := &discoveryCall{done: make(chan struct{})}
		d.inflight = call
		d.mu.Unlock()

		services, err := d.fetch(ctx)

		d.mu.Lock()
		if err == nil {
			d.services = services
			d.fetched = d.c.now()
		}
		d.inflight = nil
		call.err = err
		call.canceled = err != nil && ctx.Err() != nil
		d.mu.Unlock()
		close(call.done)
		if err != nil {
			return "", err
		}
		uri, ok := services[key]
		if !ok {
			return "", fmt.Errorf("%w: %q", ErrServiceNotFound, service)
		}
		return uri, nil
	}
}

// invalidate forgets the cached list; the next lookup rediscovers.
func (d *discovery) invalidate() {
	d.mu.Lock()
	d.services = nil
	d.mu.Unlock()
}

// fetch performs GET {graph}/v1.0/servicePrincipals/appId={id}/endpoints.
func (d *discovery) fetch(ctx context.Context) (map[string]string, error) {
	c := d.c
	activityID := uuid.NewString()
	start := time.Now()
	status := 0
	services, err := func() (map[string]string, error) {
		token, err := c.token(ctx, c.graphScope)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDiscovery, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.discoveryURL, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: building request: %v", ErrDiscovery, ErrInvalidArgument, err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("client-request-id", activityID)
		req.Header.Set("User-Agent", c.provider)
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("%w: %w: %w (client-request-id %s)", ErrDiscovery, ErrUnavailable, err, activityID)
		}
		defer resp.Body.Close()
		status = resp.StatusCode
		c.noteAnswer("discovery", status)
		body, err := readCapped(resp.Body, c.maxBody)
		if err != nil {
			if errors.Is(err, errTooLarge) {
				return nil, fmt.Errorf("%w: %w: %v", ErrDiscovery, ErrMalformedResponse, err)
			}
			return nil, fmt.Errorf("%w: %w: %w (client-request-id %s)", ErrDiscovery, ErrUnavailable, err, activityID)
		}
		if status < 200 || status > 299 {
			return nil, fmt.Errorf("%w: %w", ErrDiscovery,
				&HTTPError{Operation: "discovery", Status: status, ActivityID: activityID, Body: errorSummary(body),
					RetryAfter: transport.RetryAfter(resp.Header, time.Now())})
		}
		return d.parse(body, activityID)
	}()
	attrs := []slog.Attr{
		slog.String("operation", "discovery"),
		slog.String("clientRequestId", activityID),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		c.log.LogAttrs(ctx, slog.LevelWarn, "graph discovery failed", attrs...)
	} else {
		attrs = append(attrs, slog.String("scepService", services[strings.ToLower(ServiceScepValidation)]),
			slog.String("pkiService", services[strings.ToLower(ServicePkiConnector)]))
		c.log.LogAttrs(ctx, slog.LevelInfo, "graph discovery", attrs...)
	}
	return services, err
}

// parse extracts providerName → uri from a Graph endpoints answer. Only the
// services we use are kept. Names match case-insensitively; the first entry
// of a duplicated name wins (Java library behaviour); a URI must be an
// absolute https URL, since the Intune bearer token is sent to it.
func (d *discovery) parse(body []byte, activityID string) (map[string]string, error) {
	var doc struct {
		Value *[]struct {
			ProviderName *string `json:"providerName"`
			URI          *string `json:"uri"`
		} `json:"value"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w: decoding endpoints list: %v (client-request-id %s)", ErrDiscovery, ErrMalformedResponse, err, activityID)
	}
	if doc.Value == nil {
		return nil, fmt.Errorf("%w: %w: endpoints list has no \"value\" array (client-request-id %s)", ErrDiscovery, ErrMalformedResponse, activityID)
	}
	wanted := map[string]bool{
		strings.ToLower(ServiceScepValidation): true,
		strings.ToLower(ServicePkiConnector):   true,
	}
	out := make(map[string]string, len(wanted))
	for _, e := range *doc.Value {
		if e.ProviderName == nil || e.URI == nil {
			continue
		}
		name := strings.ToLower(strings.TrimSpace(*e.ProviderName))
		if !wanted[name] {
			continue
		}
		if _, dup := out[name]; dup {
			continue
		}
		uri := strings.TrimRight(strings.TrimSpace(*e.URI), "/")
		u, err := url.Parse(uri)
		// No "?" or "#" at all, even empty: the operation's path is appended to the URI as a string, and would
		// land in the query or the fragment, sending the call to the service's root.
		if err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsAny(uri, "?#") || !d.c.intuneHost(u.Hostname()) {
			d.c.log.Warn("graph discovery: ignoring unusable service URI",
				slog.String("service", *e.ProviderName), slog.String("uri", uri))
			continue
		}
		out[name] = uri
	}
	return out, nil
}

// intuneHost reports whether the Intune token may be sent to host: a host under the Intune resource's domain
// (serviceDomain), or Graph's own host (which answered the discovery; the local fake serves both). Graph's list
// decides which scale unit serves the tenant, but not that the token (good for validation, notifications and
// revocation) leaves Microsoft's Intune service for whatever host an answer names.
func (c *Client) intuneHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h != "" && (h == c.serviceDomain || strings.HasSuffix(h, "."+c.serviceDomain) || strings.EqualFold(h, c.graphHost))
}
