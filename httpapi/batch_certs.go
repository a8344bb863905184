package httpapi

import (
	"net/http"
	"strings"
	"time"

	"custody"
	"custody/batch"
)

// certificateIn is the body of a certificate add.
type certificateIn struct {
	Thumbprint          string `json:"thumbprint"`
	ThumbprintAlgorithm string `json:"thumbprintAlgorithm"`
	batch.CertificateSpec
}

// certificateOut is a Certificate as the Batch REST API returns it: never
// with its data or password.
type certificateOut struct {
	Metadata                    string     `json:"odata.metadata,omitempty"`
	Thumbprint                  string     `json:"thumbprint"`
	ThumbprintAlgorithm         string     `json:"thumbprintAlgorithm"`
	URL                         string     `json:"url"`
	State                       string     `json:"state"`
	StateTransitionTime         time.Time  `json:"stateTransitionTime"`
	PreviousState               string     `json:"previousState,omitempty"`
	PreviousStateTransitionTime *time.Time `json:"previousStateTransitionTime,omitempty"`
	Format                      string     `json:"certificateFormat,omitempty"`
	PublicData                  *string    `json:"publicData,omitempty"`
}

func (q *batchRequest) certURL(alg, tp string) string {
	return q.baseURL() + "/certificates(thumbprintAlgorithm=" + alg + ",thumbprint=" + tp + ")"
}

func (q *batchRequest) certBody(c *batch.Certificate, withMetadata bool) certificateOut {
	out := certificateOut{
		Thumbprint: c.Thumbprint, ThumbprintAlgorithm: c.ThumbprintAlgorithm, URL: q.certURL(c.ThumbprintAlgorithm, c.Thumbprint),
		State: c.State, StateTransitionTime: c.StateTransitionTime, PreviousState: c.PreviousState,
		PreviousStateTransitionTime: optTime(c.PreviousStateTransitionTime), Format: c.Spec.Format, PublicData: c.Spec.PublicData,
	}
	if withMetadata {
		out.Metadata = q.metadata("certificates/@Element")
	}
	return out
}

// certificateKey parses certificates(thumbprintAlgorithm={alg},thumbprint={tp}).
func certificateKey(seg string) (alg, tp string, err error) {
	inner := seg[len("certificates("):]
	if !strings.HasSuffix(inner, ")") {
		return "", "", badCertificatePath(seg)
	}
	inner = strings.TrimSuffix(inner, ")")
	for _, part := range strings.Split(inner, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return "", "", badCertificatePath(seg)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "thumbprintalgorithm":
			alg = strings.TrimSpace(v)
		case "thumbprint":
			tp = strings.TrimSpace(v)
		default:
			return "", "", badCertificatePath(seg)
		}
	}
	if alg == "" || tp == "" {
		return "", "", badCertificatePath(seg)
	}
	return alg, tp, nil
}

func badCertificatePath(seg string) error {
	return custody.Errorf(custody.KindInvalid, "InvalidUri", "The certificate address %q is not valid; use /certificates(thumbprintAlgorithm=sha1,thumbprint={thumbprint}).", clipPath(seg))
}

func (b *batchData) addCertificate(q *batchRequest) error {
	var in certificateIn
	if err := q.decode(&in); err != nil {
		return err
	}
	c, err := b.data.AddCertificate(q.ctx, q.account.Name, in.ThumbprintAlgorithm, in.Thumbprint, in.CertificateSpec)
	if err != nil {
		return err
	}
	return q.created("", c.CreationTime, q.certURL(c.ThumbprintAlgorithm, c.Thumbprint))
}

func (b *batchData) getCertificate(q *batchRequest) error {
	alg, tp, err := certificateKey(q.segment(0))
	if err != nil {
		return err
	}
	c, err := b.data.GetCertificate(q.ctx, q.account.Name, alg, tp)
	if err != nil {
		return err
	}
	return q.writeEntity(q.certBody(c, true), "", time.Time{})
}

func (b *batchData) listCertificates(q *batchRequest) error {
	lq, err := q.listQuery()
	if err != nil {
		return err
	}
	cs, next, err := b.data.ListCertificates(q.ctx, q.account.Name, lq)
	if err != nil {
		return err
	}
	items := make([]any, len(cs))
	for i, c := range cs {
		items[i] = q.certBody(c, false)
	}
	return q.writeList("certificates", items, next)
}

func (b *batchData) deleteCertificate(q *batchRequest) error {
	alg, tp, err := certificateKey(q.segment(0))
	if err != nil {
		return err
	}
	if err := b.data.DeleteCertificate(q.ctx, q.account.Name, alg, tp); err != nil {
		return err
	}
	return q.noBody(http.StatusAccepted)
}
