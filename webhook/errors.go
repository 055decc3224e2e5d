package webhook

import (
	"errors"
	"net/http"
)

// requestError is a refused delivery: the status and message the client
// gets, and the outcome counted in metrics and logs. It is the only place
// a status code is chosen for a failure; the cause, when there is one,
// goes to the log and never to the client.
type requestError struct {
	status  int
	outcome string
	message string
}

func (e *requestError) Error() string { return e.message }

// Outcomes of a request, as the outcome label of the metrics and the
// outcome field of the log line.
const (
	outcomeStored           = "stored"
	outcomeDuplicate        = "duplicate"
	outcomePing             = "ping"
	outcomeIgnoredEvent     = "ignored_event"
	outcomeNoPool           = "no_pool"
	outcomeMethodNotAllowed = "method_not_allowed"
	outcomeUnsupportedType  = "unsupported_media_type"
	outcomeBadRequest       = "bad_request"
	outcomeTooLarge         = "too_large"
	outcomeTimeout          = "body_timeout"
	outcomeBusy             = "busy"
	outcomeUnauthorized     = "unauthorized"
	outcomeUnavailable      = "unavailable"
)

// The refusals a request can end in.
var (
	errMethod = &requestError{http.StatusMethodNotAllowed, outcomeMethodNotAllowed,
		"only POST is accepted"}
	errContentType = &requestError{http.StatusUnsupportedMediaType, outcomeUnsupportedType,
		"content type must be application/json"}
	errFormEncoded = &requestError{http.StatusUnsupportedMediaType, outcomeUnsupportedType,
		"content type must be application/json: set the webhook's content type to application/json in its GitHub settings"}
	errNoEvent = &requestError{http.StatusBadRequest, outcomeBadRequest,
		"missing X-GitHub-Event header"}
	errNoDelivery = &requestError{http.StatusBadRequest, outcomeBadRequest,
		"missing X-GitHub-Delivery header"}
	errBadDelivery = &requestError{http.StatusBadRequest, outcomeBadRequest,
		"invalid X-GitHub-Delivery header: it must be 1 to 100 printable characters without spaces"}
	errTooLarge = &requestError{http.StatusRequestEntityTooLarge, outcomeTooLarge,
		"body is larger than the configured maximum"}
	errBodyTimeout = &requestError{http.StatusRequestTimeout, outcomeTimeout,
		"the body did not arrive in time"}
	errBusy = &requestError{http.StatusServiceUnavailable, outcomeBusy,
		"too many large deliveries are being read at once; redeliver it later"}
	errReadBody = &requestError{http.StatusBadRequest, outcomeBadRequest,
		"could not read the request body"}
	errNoSignature = &requestError{http.StatusUnauthorized, outcomeUnauthorized,
		"missing X-Hub-Signature-256 header"}
	errSHA1Only = &requestError{http.StatusUnauthorized, outcomeUnauthorized,
		"X-Hub-Signature (SHA-1) is not accepted: X-Hub-Signature-256 is required"}
	errBadSignature = &requestError{http.StatusUnauthorized, outcomeUnauthorized,
		"X-Hub-Signature-256 does not match the body"}
	errMalformedJSON = &requestError{http.StatusBadRequest, outcomeBadRequest,
		"body is not valid JSON"}
	errUnavailable = &requestError{http.StatusServiceUnavailable, outcomeUnavailable,
		"the event could not be stored; redeliver it later"}
)

// invalidJob is a 400 for a workflow_job payload that is JSON but lacks
// what ephemera needs; problem names what is wrong.
func invalidJob(problem string) *requestError {
	return &requestError{http.StatusBadRequest, outcomeBadRequest, "invalid workflow_job payload: " + problem}
}

// asRequestError finds the refusal in err; anything else is a 503, so an
// unexpected failure is never answered with a success or a 4xx that
// GitHub would not redeliver.
func asRequestError(err error) *requestError {
	if re, ok := errors.AsType[*requestError](err); ok {
		return re
	}
	return errUnavailable
}
