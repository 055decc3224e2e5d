package webhook

import (
	"encoding/json"
	"net/http"
)

// Response bodies.
type (
	storedBody struct {
		Delivery string `json:"delivery"`
		Pool     string `json:"pool"`
	}
	ignoredBody struct {
		Ignored string `json:"ignored"`
	}
	pingBody struct {
		OK bool `json:"ok"`
	}
	errorBody struct {
		Error string `json:"error"`
	}
)

// answer is a successful end of a request.
type answer struct {
	status  int
	outcome string
	body    any
}

// writeJSON answers status with body encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, body any) {
	data, err := json.Marshal(body)
	if err != nil { // the bodies are plain structs of strings
		data = []byte(`{}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}
