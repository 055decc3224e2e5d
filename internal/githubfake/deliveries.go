package githubfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

type apiDelivery struct {
	ID             int64     `json:"id"`
	GUID           string    `json:"guid"`
	DeliveredAt    time.Time `json:"delivered_at"`
	Redelivery     bool      `json:"redelivery"`
	Duration       float64   `json:"duration"`
	Status         string    `json:"status"`
	StatusCode     int       `json:"status_code"`
	Event          string    `json:"event"`
	Action         string    `json:"action"`
	InstallationID int64     `json:"installation_id"`
	RepositoryID   int64     `json:"repository_id"`
	Request        any       `json:"request,omitempty"`
	Response       any       `json:"response,omitempty"`
}

func (d *delivery) api() apiDelivery {
	status, at := d.Status, d.DeliveredAt
	if d.Pending {
		status, at = "pending", time.Now().UTC()
	}
	return apiDelivery{
		ID: d.ID, GUID: d.GUID, DeliveredAt: at, Redelivery: d.Redelivery, Status: status,
		StatusCode: d.StatusCode, Event: d.Event, Action: d.Action, InstallationID: d.InstallationID, RepositoryID: 1,
	}
}

// handleListDeliveries lists App webhook deliveries newest first, with
// cursor pagination in the Link header as GitHub does.
func (s *Server) handleListDeliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	if perPage <= 0 || perPage > 100 {
		perPage = 30
	}
	below := int64(-1)
	if c := q.Get("cursor"); c != "" {
		v, err := strconv.ParseInt(strings.TrimPrefix(c, "v1_"), 10, 64)
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"message": "invalid cursor"})
			return
		}
		below = v
	}
	h := s.actions.hooks
	h.mu.Lock()
	out := []apiDelivery{}
	more := false
	for i := len(h.all) - 1; i >= 0; i-- {
		d := h.all[i]
		if below >= 0 && d.ID >= below {
			continue
		}
		if len(out) == perPage {
			more = true
			break
		}
		out = append(out, d.api())
	}
	h.mu.Unlock()
	if more {
		next := fmt.Sprintf("%sapp/hook/deliveries?cursor=v1_%d&per_page=%d", s.URL, out[len(out)-1].ID, perPage)
		w.Header().Set("Link", `<`+next+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetDelivery(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	h := s.actions.hooks
	h.mu.Lock()
	d := h.byID[id]
	if !ok || d == nil {
		h.mu.Unlock()
		notFound(w)
		return
	}
	body := d.api()
	body.Request = map[string]any{"headers": map[string]string{"X-GitHub-Event": d.Event, "X-GitHub-Delivery": d.GUID}, "payload": json.RawMessage(d.payload)}
	body.Response = map[string]any{"headers": map[string]string{}, "payload": ""}
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// handleRedeliver sends a delivery again under its GUID: 202, as GitHub.
func (s *Server) handleRedeliver(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	if !ok {
		notFound(w)
		return
	}
	d, err := s.Redeliver(id)
	if err != nil {
		notFound(w)
		return
	}
	h := s.actions.hooks
	h.mu.Lock()
	body := h.byID[d.ID].api()
	h.mu.Unlock()
	writeJSON(w, http.StatusAccepted, body)
}
