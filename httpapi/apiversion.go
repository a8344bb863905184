package httpapi

import (
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The api-version policy, the one place every API's versions are decided.
//
// Each API accepts every api-version Azure documents for it (the lists
// below, oldest first). A well-formed version newer than every known version
// of its form is served as the newest known stable version: the response
// says so in the x-custody-api-version-served header and the server logs it
// at debug level, so that SDKs released after this server keep working. A
// missing, malformed, unpublished or too old version is refused with the
// API's own error: InvalidApiVersionParameter (resource manager),
// BadParameter (key vault), InvalidQueryParameterValue (batch).
//
// Version forms: resource manager APIs use yyyy-mm-dd with an optional
// -preview (or -beta, -alpha, -privatepreview) suffix; the key vault data
// plane uses 7.N (with -preview or -preview.N) and, from 2025, yyyy-mm-dd;
// the batch data plane uses yyyy-mm-dd.NN.N and, from 2025, yyyy-mm-dd.

// ServedAPIVersionHeader is the response header naming the api-version a
// request was served as, when the client asked for a newer one.
const ServedAPIVersionHeader = "x-custody-api-version-served"

// Resource manager API versions, by resource provider namespace.
var (
	// resourcesAPIVersions are Microsoft.Resources': subscriptions,
	// locations, resource groups (az 2.45 uses 2019-11-01 for
	// subscriptions, 2022-09-01 for groups).
	resourcesAPIVersions = []string{"2014-04-01-preview", "2015-01-01", "2015-11-01", "2016-02-01", "2016-06-01",
		"2016-07-01", "2016-09-01", "2017-05-10", "2018-02-01", "2018-05-01", "2018-06-01", "2019-03-01",
		"2019-05-01", "2019-05-10", "2019-06-01", "2019-07-01", "2019-08-01", "2019-10-01", "2019-11-01",
		"2020-01-01", "2020-06-01", "2020-08-01", "2020-10-01", "2021-01-01", "2021-04-01", "2022-01-01",
		"2022-09-01", "2022-12-01", "2023-07-01", "2024-03-01", "2024-07-01", "2024-11-01", "2025-03-01",
		"2025-04-01"}

	// authorizationAPIVersions are Microsoft.Authorization's: role
	// assignments and role definitions.
	authorizationAPIVersions = []string{"2014-07-01-preview", "2014-10-01-preview", "2015-06-01", "2015-07-01",
		"2017-05-01", "2017-10-01-preview", "2018-01-01-preview", "2018-07-01", "2018-09-01-preview",
		"2020-03-01-preview", "2020-04-01-preview", "2020-08-01-preview", "2020-10-01-preview",
		"2021-03-01-preview", "2022-01-01-preview", "2022-04-01", "2022-05-01-preview", "2022-08-01-preview"}

	// msiAPIVersions are Microsoft.ManagedIdentity's (armmsi v1.3.0 sends
	// 2024-11-30).
	msiAPIVersions = []string{"2015-08-31-preview", "2018-11-30", "2021-09-30-preview", "2022-01-31-preview",
		"2023-01-31", "2023-07-31-preview", "2024-11-30", "2025-01-31-preview"}

	// keyVaultAPIVersions are Microsoft.KeyVault's (armkeyvault v1.5.0
	// sends 2024-11-01).
	keyVaultAPIVersions = []string{"2015-06-01", "2016-10-01", "2018-02-14", "2018-02-14-preview", "2019-09-01",
		"2020-04-01-preview", "2021-04-01-preview", "2021-06-01-preview", "2021-10-01", "2021-11-01-preview",
		"2022-02-01-preview", "2022-07-01", "2022-11-01", "2023-02-01", "2023-07-01", "2023-08-01-preview",
		"2024-04-01-preview", "2024-11-01", "2024-12-01-preview", "2025-05-01"}

	// genericResourcesAPIVersions are those of the subscription-wide
	// resource list (armkeyvault's NewListPager sends 2015-11-01).
	genericResourcesAPIVersions = resourcesAPIVersions

	// batchAPIVersions are Microsoft.Batch's (armbatch/v3 v3.0.1 and
	// current az send 2024-07-01; az 2.45 sends 2022-10-01).
	batchAPIVersions = []string{"2015-12-01", "2017-01-01", "2017-05-01", "2017-09-01", "2018-12-01",
		"2019-04-01", "2019-08-01", "2020-03-01", "2020-05-01", "2020-09-01", "2021-01-01", "2021-06-01",
		"2022-01-01", "2022-06-01", "2022-10-01", "2023-05-01", "2023-11-01", "2024-02-01", "2024-07-01",
		"2025-06-01"}

	// metadataAPIVersions are those of the cloud metadata document
	// (/metadata/endpoints): 2015-01-01 is one object, later versions a
	// list of clouds.
	metadataAPIVersions = []string{"2015-01-01", "2018-01-01", "2019-05-01", "2020-06-01", "2022-09-01"}
)

// kvDataAPIVersions are the key vault data plane's (azkeys v1.5.0 sends
// 2025-07-01).
var kvDataAPIVersions = []string{"2015-06-01", "2016-10-01", "7.0-preview", "7.0", "7.1-preview", "7.1",
	"7.2-preview", "7.2", "7.3-preview", "7.3", "7.4-preview.1", "7.4", "7.5-preview.1", "7.5",
	"7.6-preview.1", "7.6-preview.2", "7.6", "2025-07-01"}

// batchDataAPIVersions are the batch data plane's (azbatch v0.1.0 sends
// 2024-07-01.20.0; az 2.45 sends 2022-10-01.16.0).
var batchDataAPIVersions = []string{"2015-12-01.2.2", "2016-02-01.3.0", "2016-07-01.3.1", "2017-01-01.4.0",
	"2017-05-01.5.0", "2017-06-01.5.1", "2017-09-01.6.0", "2018-03-01.6.1", "2018-08-01.7.0",
	"2018-12-01.8.0", "2019-06-01.9.0", "2019-08-01.10.0", "2020-03-01.11.0", "2020-09-01.12.0",
	"2021-06-01.14.0", "2022-01-01.15.0", "2022-10-01.16.0", "2023-05-01.17.0", "2023-11-01.18.0",
	"2024-02-01.19.0", "2024-07-01.20.0", "2025-06-01"}

var (
	armVersionForm   = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})(-(preview|beta|alpha|privatepreview))?$`)
	vaultDottedForm  = regexp.MustCompile(`^(\d{1,3})\.(\d{1,3})(-preview(\.\d{1,3})?)?$`)
	vaultDateForm    = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})(-preview)?$`)
	batchVersionForm = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})(\.\d{1,3}\.\d{1,3})?$`)
)

// validDate reports whether s (yyyy-mm-dd) is a calendar date.
func validDate(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}

// versionDate returns the date part of a date-form version, "" for another
// form or a malformed one.
func versionDate(form *regexp.Regexp, v string) string {
	m := form.FindStringSubmatch(v)
	if m == nil || !validDate(m[1]) {
		return ""
	}
	return m[1]
}

// newestStable returns the newest version of known (oldest first) that is
// not a preview.
func newestStable(known []string) string {
	for i := len(known) - 1; i >= 0; i-- {
		if !isPreview(known[i]) {
			return known[i]
		}
	}
	return known[len(known)-1]
}

func isPreview(v string) bool {
	return strings.Contains(v, "preview") || strings.Contains(v, "beta") || strings.Contains(v, "alpha")
}

// newerDate reports whether v's date (by form) is after every dated version
// in known.
func newerDate(form *regexp.Regexp, known []string, v string) bool {
	d := versionDate(form, v)
	if d == "" {
		return false
	}
	for _, k := range known {
		if kd := versionDate(form, k); kd != "" && kd >= d {
			return false
		}
	}
	return true
}

// resolveARMVersion returns the api-version to serve a resource manager
// request that asked for v on a route accepting known: v itself when known,
// the newest known stable version when v is well-formed and newer than all
// of known, and false otherwise. A known list of "*" accepts any version.
func resolveARMVersion(known []string, v string) (string, bool) {
	if slices.Contains(known, v) || slices.Contains(known, "*") {
		return v, true
	}
	if newerDate(armVersionForm, known, v) {
		return newestStable(known), true
	}
	return "", false
}

// resolveVaultVersion is resolveARMVersion for the key vault data plane.
func resolveVaultVersion(v string) (string, bool) {
	if slices.Contains(kvDataAPIVersions, v) {
		return v, true
	}
	newest := newestStable(kvDataAPIVersions)
	if newerDate(vaultDateForm, kvDataAPIVersions, v) {
		return newest, true
	}
	if m := vaultDottedForm.FindStringSubmatch(v); m != nil {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		for _, k := range kvDataAPIVersions {
			if km := vaultDottedForm.FindStringSubmatch(k); km != nil {
				kmaj, _ := strconv.Atoi(km[1])
				kmin, _ := strconv.Atoi(km[2])
				if kmaj > major || kmaj == major && kmin >= minor {
					return "", false
				}
			}
		}
		return newest, true
	}
	return "", false
}

// resolveBatchDataVersion is resolveARMVersion for the batch data plane.
func resolveBatchDataVersion(v string) (string, bool) {
	if slices.Contains(batchDataAPIVersions, v) {
		return v, true
	}
	if newerDate(batchVersionForm, batchDataAPIVersions, v) {
		return newestStable(batchDataAPIVersions), true
	}
	return "", false
}

// servedAs records that a request asking for api-version asked was served
// as served: a response header and a debug log line. It does nothing when
// they are the same.
func (s *Server) servedAs(w http.ResponseWriter, r *http.Request, asked, served string) {
	if asked == served {
		return
	}
	w.Header().Set(ServedAPIVersionHeader, served)
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "api-version newer than known, served as the newest known",
		slog.String("host", hostOnly(r.Host)), slog.String("path", logPath(r)),
		slog.String("asked", asked), slog.String("served", served))
}
