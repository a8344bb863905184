package adversarial_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// Hostile values the security review used, shared by the body fuzzers.
var (
	name500K    = strings.Repeat("a", 500<<10)
	maxInt64    = "9223372036854775807"
	year2300    = "10413792000" // 2300-01-01 in Unix seconds
	hostileStrs = []string{"%2F", "a%2Fb", "../..", "\u0000", `\ud800`, "https://127.0.0.2:38501/keys/x", "/\t/evil.example"}
)

// fuzzTarget is one operation a body fuzzer sends to.
type fuzzTarget struct {
	host, method, path, scope string
}

// fuzzBodies fuzzes the JSON bodies of targets as the Owner: whatever the
// body, the answer is never a 5xx (the server log is checked too), is
// UTF-8, and an error answer is JSON with an error code.
func fuzzBodies(f *testing.F, seeds []string, targets func(e *env) []fuzzTarget) {
	for _, h := range hostileStrs {
		seeds = append(seeds, `{"id":"`+h+`","name":"`+h+`","location":"`+h+`"}`)
	}
	seeds = append(seeds, ``, `null`, `[]`, `{`, `"x"`, `1e999`, `{}{}`, "\xff\xfe", `{"a":`+strings.Repeat("[", 10000)+`}`,
		`{"id":"`+name500K+`"}`)
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	e := newEnv(f)
	ts := targets(e)
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		tg := ts[int(which)%len(ts)]
		r := call(t, e.ts, e.owner.tokens[tg.scope], tg.method, tg.host, tg.path, body)
		if r.Status >= 500 {
			t.Fatalf("%s %s with body %q: %d %s", tg.method, tg.path, clip(body, 200), r.Status, clip(r.Body, 300))
		}
		if !utf8.ValidString(r.Body) {
			t.Fatalf("%s %s: the answer is not UTF-8", tg.method, tg.path)
		}
		if r.Status >= 400 && r.Body != "" {
			var v map[string]any
			if err := json.Unmarshal([]byte(r.Body), &v); err != nil || (v["error"] == nil && v["code"] == nil) {
				t.Fatalf("%s %s: error answer %d is not an error body: %s", tg.method, tg.path, r.Status, clip(r.Body, 300))
			}
		}
	})
}

func armTargets(e *env, paths ...string) []fuzzTarget {
	var out []fuzzTarget
	for _, p := range paths {
		m, path, _ := strings.Cut(p, " ")
		out = append(out, fuzzTarget{"management", m, path, scopeARM})
	}
	return out
}

func FuzzARMVaultBody(f *testing.F) {
	fuzzBodies(f, []string{
		`{"location":"westus2","properties":{"tenantId":"t","sku":{"family":"A","name":"standard"},"accessPolicies":[]}}`,
		`{"properties":{"enableRbacAuthorization":false,"accessPolicies":[{"tenantId":"t","objectId":"o","permissions":{"keys":["all"]}}]}}`,
		`{"properties":{"networkAcls":{"defaultAction":"Sideways","ipRules":[{"value":"999.1.1.1/99"}]},"publicNetworkAccess":"Maybe"}}`,
		`{"properties":{"softDeleteRetentionInDays":` + maxInt64 + `,"enablePurgeProtection":false}}`,
		`{"location":"moon","tags":{"` + strings.Repeat("k", 600) + `":"v"}}`,
	}, func(e *env) []fuzzTarget {
		v := e.ids["vault"]
		return armTargets(e, "PUT "+v+"?api-version=2023-07-01", "PATCH "+v+"?api-version=2023-07-01",
			"PUT "+v+"/accessPolicies/add?api-version=2023-07-01", "PUT "+v+"/accessPolicies/remove?api-version=2023-07-01",
			"POST /subscriptions/"+e.ts.Admin.SubscriptionID+"/providers/Microsoft.KeyVault/checkNameAvailability?api-version=2023-07-01")
	})
}

func FuzzARMBatchAccountBody(f *testing.F) {
	fuzzBodies(f, []string{
		`{"location":"westus2","identity":{"type":"SystemAssigned"}}`,
		`{"identity":{"type":"UserAssigned","userAssignedIdentities":{"/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z":{}}}}`,
		`{"properties":{"encryption":{"keySource":"Microsoft.KeyVault","keyVaultProperties":{"keyIdentifier":"https://127.0.0.2:38501/keys/x"}}}}`,
		`{"properties":{"poolAllocationMode":"UserSubscription","publicNetworkAccess":"x","allowedAuthenticationModes":["AAD","x"]}}`,
		`{"location":"westus2","properties":{"dedicatedCoreQuota":` + maxInt64 + `}}`,
	}, func(e *env) []fuzzTarget {
		a := e.ids["account"]
		return armTargets(e, "PUT "+a+"?api-version=2024-07-01", "PATCH "+a+"?api-version=2024-07-01")
	})
}

func FuzzARMIdentityBody(f *testing.F) {
	fuzzBodies(f, []string{`{"location":"westus2"}`, `{"location":"westus2","tags":{"a":"b"}}`, `{"tags":null}`},
		func(e *env) []fuzzTarget {
			i := e.ids["identity"]
			return armTargets(e, "PUT "+i+"?api-version=2023-01-31", "PATCH "+i+"?api-version=2023-01-31",
				"PUT "+e.ids["rgB"]+"?api-version=2021-04-01")
		})
}

func FuzzARMRoleAssignmentBody(f *testing.F) {
	fuzzBodies(f, []string{
		`{"properties":{"roleDefinitionId":"/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635","principalId":"p"}}`,
		`{"properties":{"roleDefinitionId":"%2F..%2F","principalId":"","principalType":"User"}}`,
		`{"properties":{"roleDefinitionId":"","principalId":null}}`,
	}, func(e *env) []fuzzTarget {
		return armTargets(e, "PUT "+e.ids["rgA"]+"/providers/Microsoft.Authorization/roleAssignments/0b9c8a4e-5f0e-4c36-9d25-0d3e3b1c5a11?api-version=2022-04-01",
			"PUT "+e.ids["account"]+"/providers/Microsoft.Authorization/roleAssignments/1b9c8a4e-5f0e-4c36-9d25-0d3e3b1c5a11?api-version=2022-04-01")
	})
}

func FuzzVaultKeyBody(f *testing.F) {
	fuzzBodies(f, []string{
		`{"kty":"RSA","key_size":2048}`, `{"kty":"RSA","key_size":` + maxInt64 + `}`, `{"kty":"EC","crv":"P-384"}`,
		`{"kty":"RSA","attributes":{"nbf":` + year2300 + `,"exp":` + year2300 + `}}`,
		`{"attributes":{"nbf":` + maxInt64 + `,"exp":-` + maxInt64 + `}}`,
		`{"alg":"RSA-OAEP-256","value":"AAAA"}`, `{"alg":"RSA1_5","value":"` + strings.Repeat("A", 4096) + `"}`,
		`{"alg":"RS256","value":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}`, `{"alg":"ES256","digest":"AA","value":"AA"}`,
		`{"key":{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}}`, `{"value":"AAAA"}`,
		`{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P` + maxInt64 + `D"},"action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P1000000Y"}}`,
	}, func(e *env) []fuzzTarget {
		h := vaultName + ".vault"
		k := "/keys/" + keyName
		v := "?api-version=7.4"
		return []fuzzTarget{
			{h, "POST", "/keys/fuzzkey/create" + v, scopeVault}, {h, "PATCH", k + v, scopeVault},
			{h, "PATCH", k + "/" + e.vals["version"] + v, scopeVault}, {h, "PUT", "/keys/fuzzimport" + v, scopeVault},
			{h, "POST", k + "/encrypt" + v, scopeVault}, {h, "POST", k + "/decrypt" + v, scopeVault},
			{h, "POST", k + "/wrapkey" + v, scopeVault}, {h, "POST", k + "/unwrapkey" + v, scopeVault},
			{h, "POST", k + "/sign" + v, scopeVault}, {h, "POST", k + "/verify" + v, scopeVault},
			{h, "PUT", k + "/rotationpolicy" + v, scopeVault}, {h, "POST", "/keys/restore" + v, scopeVault},
		}
	})
}

func batchTargets(paths ...string) []fuzzTarget {
	var out []fuzzTarget
	for _, p := range paths {
		m, path, _ := strings.Cut(p, " ")
		out = append(out, fuzzTarget{accountName + ".batch", m, path + "?api-version=2024-07-01.20.0", scopeBatch})
	}
	return out
}

func FuzzBatchJobBody(f *testing.F) {
	fuzzBodies(f, []string{
		`{"id":"j1","poolInfo":{"poolId":"p1"}}`, `{"id":"j2","poolInfo":{"poolId":"p1"},"priority":` + maxInt64 + `}`,
		`{"id":"j3","poolInfo":{"poolId":"p1"},"constraints":{"maxWallClockTime":"P` + maxInt64 + `D"}}`,
		`{"priority":-1001}`, `{"disableTasks":"x"}`, `{"metadata":[{"name":"` + name500K + `","value":""}]}`,
	}, func(e *env) []fuzzTarget {
		return batchTargets("POST /jobs", "PUT /jobs/j1", "PATCH /jobs/j1", "POST /jobs/j1/disable", "POST /jobs/j1/terminate")
	})
}

func FuzzBatchTaskBody(f *testing.F) {
	fuzzBodies(f, []string{
		`{"id":"t1","commandLine":"true"}`, `{"value":[{"id":"t1","commandLine":"true"}]}`,
		`{"id":"t2","commandLine":"x","requiredSlots":` + maxInt64 + `}`,
		`{"id":"t3","commandLine":"x","dependsOn":{"taskIdRanges":[{"start":0,"end":` + maxInt64 + `}]}}`,
		`{"id":"t4","commandLine":"x","resourceFiles":[{"httpUrl":"http://169.254.169.254/","filePath":"../../etc/passwd"}]}`,
		`{"constraints":{"maxTaskRetryCount":` + maxInt64 + `}}`,
	}, func(e *env) []fuzzTarget {
		return batchTargets("POST /jobs/j1/tasks", "POST /jobs/j1/addtaskcollection", "PUT /jobs/j1/tasks/t1")
	})
}

func FuzzBatchPoolBody(f *testing.F) {
	fuzzBodies(f, []string{
		`{"id":"p1","vmSize":"standard_d2s_v3","targetDedicatedNodes":1}`,
		`{"id":"p2","vmSize":"standard_d2s_v3","targetDedicatedNodes":` + maxInt64 + `,"targetLowPriorityNodes":` + maxInt64 + `}`,
		`{"id":"p3","vmSize":"standard_d2s_v3","taskSlotsPerNode":` + maxInt64 + `}`,
		`{"id":"p4","vmSize":"x","identity":{"type":"UserAssigned","userAssignedIdentities":[{"resourceId":"/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z"}]}}`,
		`{"targetDedicatedNodes":-1,"resizeTimeout":"P` + maxInt64 + `D"}`, `{"nodeList":["` + name500K + `"]}`,
		`{"startTask":{"commandLine":"x","userIdentity":{"autoUser":{"elevationLevel":"admin"}}}}`, `{"username":"u","password":"p","expiryTime":"9999-12-31T23:59:59Z"}`,
	}, func(e *env) []fuzzTarget {
		return batchTargets("POST /pools", "PATCH /pools/p1", "POST /pools/p1/updateproperties", "POST /pools/p1/resize",
			"POST /pools/p1/removenodes", "POST /pools/p1/nodecredentials")
	})
}

func FuzzBatchCertificateBody(f *testing.F) {
	fuzzBodies(f, []string{
		`{"thumbprint":"0123456789abcdef0123456789abcdef01234567","thumbprintAlgorithm":"sha1","data":"AA==","certificateFormat":"pfx","password":"p"}`,
		`{"thumbprint":"%2F","thumbprintAlgorithm":"sha1","data":"` + strings.Repeat("A", 1<<20) + `"}`,
		`{"thumbprint":"ab","thumbprintAlgorithm":"md5","data":"!!","certificateFormat":"cer"}`,
	}, func(e *env) []fuzzTarget { return batchTargets("POST /certificates") })
}
