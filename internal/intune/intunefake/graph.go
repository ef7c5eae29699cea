package intunefake

import (
	"net/http"
	"strings"
)

// Endpoint is one entry of the Graph servicePrincipal endpoints list.
type Endpoint struct {
	ID                 string  `json:"id"`
	DeletedDateTime    *string `json:"deletedDateTime"`
	Capability         string  `json:"capability"`
	ProviderID         string  `json:"providerId"`
	ProviderName       string  `json:"providerName"`
	ProviderResourceID string  `json:"providerResourceId"`
	URI                string  `json:"uri"`
}

// DefaultEndpoints returns the discovery answer the fake gives unless
// SetEndpoints overrode it: both Intune services at scepBase/pkiBase (plus
// the production-like paths) and unrelated decoy services.
func DefaultEndpoints(scepBase, pkiBase string) []Endpoint {
	return []Endpoint{
		{ID: newUUID(), Capability: "Intune", ProviderID: newUUID(), ProviderName: "IntuneEnrollmentFEService",
			ProviderResourceID: newUUID(), URI: scepBase + "/TrafficGateway/TrafficRoutingService/Enrollment"},
		{ID: newUUID(), Capability: "Intune", ProviderID: newUUID(), ProviderName: "ScepRequestValidationFEService",
			ProviderResourceID: newUUID(), URI: scepBase + ScepServicePath},
		{ID: newUUID(), Capability: "Intune", ProviderID: newUUID(), ProviderName: "PkiConnectorFEService",
			ProviderResourceID: newUUID(), URI: pkiBase + PkiServicePath},
		{ID: newUUID(), Capability: "Intune", ProviderID: newUUID(), ProviderName: "ScepRequestValidationFEServiceLegacy",
			ProviderResourceID: newUUID(), URI: scepBase + "/RACerts/Decoy/Gateway/DoNotUse"},
	}
}

// SetEndpoints overrides the discovery answer (duplicates, case variants,
// trailing slashes, missing services...). nil restores the default.
func (s *Server) SetEndpoints(eps []Endpoint) {
	s.mu.Lock()
	s.endpoints = append([]Endpoint(nil), eps...)
	if eps == nil {
		s.endpoints = nil
	}
	s.mu.Unlock()
}

// SetServiceBases makes discovery advertise the SCEP and PKI services at
// other base URLs (e.g. one returned by AddListener), keeping the paths.
func (s *Server) SetServiceBases(scepBase, pkiBase string) {
	s.SetEndpoints(DefaultEndpoints(strings.TrimRight(scepBase, "/"), strings.TrimRight(pkiBase, "/")))
}

// handleDiscovery serves GET /v1.0/servicePrincipals/appId={id}/endpoints and
// the alternate-key form /v1.0/servicePrincipals(appId='{id}')/endpoints.
func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request, e *Entry) {
	if r.Method != http.MethodGet {
		s.reject(w, e, http.StatusMethodNotAllowed, "Request_BadRequest", "GET only")
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/v1.0/servicePrincipals")
	var appID string
	switch {
	case strings.HasPrefix(rest, "/appId=") && strings.HasSuffix(rest, "/endpoints"):
		appID = strings.TrimSuffix(strings.TrimPrefix(rest, "/appId="), "/endpoints")
	case strings.HasPrefix(rest, "(appId='") && strings.HasSuffix(rest, "')/endpoints"):
		appID = strings.TrimSuffix(strings.TrimPrefix(rest, "(appId='"), "')/endpoints")
	default:
		s.reject(w, e, http.StatusBadRequest, "Request_BadRequest", "unsupported servicePrincipals path "+r.URL.Path)
		return
	}
	if status, code, msg := s.checkBearer(r, GraphAudience, RoleApplicationReadAll); status != 0 {
		s.reject(w, e, status, code, msg)
		return
	}
	if appID != IntuneAppID {
		s.reject(w, e, http.StatusNotFound, "Request_ResourceNotFound",
			"Resource '"+appID+"' does not exist or one of its queried reference-property objects are not present.")
		return
	}
	s.mu.Lock()
	eps := s.endpoints
	base := s.base
	s.mu.Unlock()
	if eps == nil {
		eps = DefaultEndpoints(base, base)
	}
	s.writeJSON(w, e, http.StatusOK, map[string]any{
		"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals('" + appID + "')/endpoints",
		"value":          eps,
	})
}
