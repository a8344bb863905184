package portal

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"custody"
	"custody/httpapi"
)

// page is what every template gets.
type page struct {
	Title string
	// Session is the signed-in principal (nil on the sign-in pages).
	Session *session
	// Crumbs lead from the home page to this one.
	Crumbs []crumb
	// Tabs is the resource menu on account and vault pages.
	Tabs []crumb
	// Notice is a success message; Error a message about the page or the
	// action that failed; Errors messages about single fields, by name.
	Notice string
	// NoticeLink, when set, follows the notice.
	NoticeLink *crumb
	Error      string
	Errors     map[string]string
	// Form holds the values to show in the form again.
	Form url.Values
	Data any
}

type crumb struct {
	Label   string
	Href    string
	Current bool
}

// setError puts err next to field (or at the top of the page when field is
// empty or unknown). An error whose Target names a field goes there.
func (pg *page) setError(err error, field string) {
	if err == nil {
		return
	}
	var ce *custody.Error
	if errors.As(err, &ce) && ce.Target != "" {
		if f, ok := targetFields[ce.Target]; ok {
			field = f
		}
	}
	msg := custody.ErrorMessage(err)
	if field == "" {
		pg.Error = msg
		return
	}
	if pg.Errors == nil {
		pg.Errors = map[string]string{}
	}
	pg.Errors[field] = msg
}

// targetFields maps the Target of service errors to form field names.
var targetFields = map[string]string{
	"properties.softDeleteRetentionInDays": "retentionDays",
	"properties.enablePurgeProtection":     "purgeProtection",
	"properties.enableRbacAuthorization":   "accessModel",
	"properties.accessPolicies":            "principal",
}

// statusOf is the HTTP status of an error page: the API's mapping of the
// error's kind.
func statusOf(err error) int { return httpapi.StatusOf(custody.ErrorKind(err)) }

// pages holds one template set per page, each with the shared layout.
type pages struct {
	sets map[string]*template.Template
}

var funcs = template.FuncMap{
	"time": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05 UTC")
		case *int64:
			if v == nil {
				return "—"
			}
			return time.Unix(*v, 0).UTC().Format("2006-01-02 15:04:05 UTC")
		}
		return fmt.Sprint(t)
	},
	"has": func(list []string, v string) bool {
		for _, x := range list {
			if strings.EqualFold(x, v) {
				return true
			}
		}
		return false
	},
	"esc":  url.PathEscape,
	"list": func(s ...string) []string { return s },
	"describedby": func(errs map[string]string, field, hint string) string {
		ids := []string{}
		if hint != "" {
			ids = append(ids, hint)
		}
		if errs[field] != "" {
			ids = append(ids, "err-"+field)
		}
		return strings.Join(ids, " ")
	},
}

func loadPages() (*pages, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	ps := &pages{sets: map[string]*template.Template{}}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if _, err := t.ParseFS(templateFS, n); err != nil {
			return nil, fmt.Errorf("template %s: %w", n, err)
		}
		ps.sets[name] = t
	}
	return ps, nil
}

// render writes the page name with status.
func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, name string, pg *page) {
	p.renderTemplate(w, r, status, name, "layout", pg)
}

// renderFragment writes one named template of a page without the layout
// (for htmx swaps).
func (p *Portal) renderFragment(w http.ResponseWriter, r *http.Request, name, fragment string, pg *page) {
	p.renderTemplate(w, r, http.StatusOK, name, fragment, pg)
}

func (p *Portal) renderTemplate(w http.ResponseWriter, r *http.Request, status int, name, entry string, pg *page) {
	t := p.pages.sets[name]
	if t == nil {
		p.log.Error("portal: no template", "name", name)
		http.Error(w, "The page could not be shown.", http.StatusInternalServerError)
		return
	}
	if pg.Form == nil {
		pg.Form = url.Values{}
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, entry, pg); err != nil {
		p.log.Error("portal: render", "template", name, "err", err)
		http.Error(w, "The page could not be shown.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail shows an error page for err with the API's status for its kind.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	if custody.ErrorKind(err) == custody.KindInternal {
		p.log.Error("portal request failed", "path", r.URL.Path, "err", err)
	}
	pg := &page{Title: "Something went wrong", Session: s, Crumbs: []crumb{{Label: "Home", Href: "/"}}}
	pg.setError(err, "")
	pg.Data = custody.ErrorCode(err)
	p.render(w, r, statusOf(err), "error", pg)
}
