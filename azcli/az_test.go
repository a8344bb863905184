package azcli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"custody/cli"
	"custody/server"
	"custody/server/servertest"
)

// The walk-through runs tasks on real local nodes: the test binary
// re-executes itself as `custody node`.
const agentEnv = "CUSTODY_TEST_NODE_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// azBinary is Debian's azure-cli (apt-get install azure-cli), which .ci/run
// installs.
const azBinary = "/usr/bin/az"

// The names of the walk-through's resources; the vault and the account
// each need a host name (see ensureHosts).
const (
	group   = "azclirg"
	account = "azcliaccount"
	vault   = "azclivault"
)

// pending names the steps that wait for server-side work not yet done,
// with what they wait for. Such a step that fails skips the rest of the
// walk-through with that message instead of failing the test; one that
// passes says its mark can go.
var pending = map[string]string{}

// TestAzWalkThrough runs the customer-managed-key walk-through (Azure's
// "Configure customer-managed keys for your Azure Batch account" page) with the
// real az CLI against a real server, asserting on the JSON each step prints:
//
//   - set-up with the lines `custody env --az` prints: az cloud register
//     from the metadata document, az cloud set, REQUESTS_CA_BUNDLE, az login
//     --service-principal against the ADFS-style authority;
//   - group create, batch account create with a system-assigned identity
//     (location given by display name), key vault with purge protection,
//     keyvault list, set-policy for the account's principal;
//   - keys: created with `az rest` (with --resource for the vault audience),
//     because Debian's az 2.45 packaging is broken for `az keyvault key`
//     (No module named 'azure.keyvault.v7_0', before any request is sent);
//   - account set to the key (versioned identifier), to a new version, to
//     another key, back to Microsoft.Batch;
//   - az batch account login with Azure AD, then pool, job, task create,
//     task show until it completes, task file download of its stdout;
//   - az batch account login --shared-key-auth, then another task, shown
//     and downloaded with Shared Key signatures; keys list, renew of the
//     primary key, and the data plane with the new key.
//
// Name resolution: az uses the system resolver, so the *.localhost names
// must resolve to 127.0.0.1; the documented set-up is /etc/hosts lines,
// which the test appends in CI (as root) when they are missing.
//
// Outside CI the test is skipped when az is not installed; in CI it fails.
func TestAzWalkThrough(t *testing.T) {
	inCI := os.Getenv("CI") != ""
	if _, err := os.Stat(azBinary); err != nil {
		if inCI {
			t.Fatalf("%s is missing; .ci/run installs it (apt-get install azure-cli)", azBinary)
		}
		t.Skipf("%s is missing (apt-get install azure-cli); the test runs in CI", azBinary)
	}
	if testing.Short() {
		t.Skip("the az walk-through takes half a minute or more")
	}

	t.Setenv(agentEnv, "1")
	ts := servertest.New(t, func(c *server.Config) {
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Second
		if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
			c.NodeLog = os.Stderr
		}
	})
	host := func(name string) string { return name + "." + ts.Endpoint.Domain }
	url := func(name string) string { return "https://" + host(name) + ":" + strconv.Itoa(ts.Endpoint.Port) }
	ensureHosts(t, inCI, host("login"), host("management"), host("graph"), host(vault+".vault"), host(account+".batch"))

	az := newAz(t, ts)
	w := &walk{t: t, start: time.Now()}
	defer func() {
		t.Logf("walk-through: %d az commands in %s", az.calls, time.Since(w.start).Round(time.Millisecond))
	}()
	sub, tenant, appID := ts.Admin.SubscriptionID, ts.Admin.TenantID, ts.Admin.ClientID
	armAccount := url("management") + "/subscriptions/" + sub + "/resourceGroups/" + group + "/providers/Microsoft.Batch/batchAccounts/" + account

	w.step("set-up (custody env --az)", func() error {
		return az.setUp(envLines(t, ts))
	})
	w.step("cloud show", func() error {
		c, err := az.json("cloud", "show")
		if err != nil {
			return err
		}
		return all(
			eq(c, "isActive", true),
			eqAny(strings.TrimSuffix(str(c, "endpoints.resourceManager"), "/"), "endpoints.resourceManager", url("management")),
			eq(c, "endpoints.activeDirectory", url("login")+"/adfs"),
		)
	})
	w.step("account show", func() error {
		a, err := az.json("account", "show")
		if err != nil {
			return err
		}
		return all(eq(a, "id", sub), eq(a, "tenantId", tenant), eq(a, "user.name", appID), eq(a, "user.type", "servicePrincipal"), eq(a, "state", "Enabled"))
	})

	w.step("group create", func() error {
		g, err := az.json("group", "create", "-n", group, "-l", "westus2")
		if err != nil {
			return err
		}
		return all(eq(g, "name", group), eq(g, "location", "westus2"), eq(g, "properties.provisioningState", "Succeeded"),
			eq(g, "id", "/subscriptions/"+sub+"/resourceGroups/"+group))
	})

	var principal string
	w.step("batch account create", func() error {
		// The walk-through gives the location by display name, which az turns into a
		// region name through the subscription's locations. az 2.45 spells
		// the page's --identity SystemAssigned as --mi-system-assigned, which
		// takes a value.
		a, err := az.json("batch", "account", "create", "-n", account, "-g", group, "-l", "West US 2", "--mi-system-assigned", "SystemAssigned")
		if err != nil {
			return err
		}
		principal = str(a, "identity.principalId")
		return all(eq(a, "name", account), eq(a, "location", "westus2"), eq(a, "provisioningState", "Succeeded"),
			eq(a, "identity.type", "SystemAssigned"), nonEmpty(a, "identity.principalId"), eq(a, "identity.tenantId", tenant),
			eq(a, "accountEndpoint", host(account+".batch")+":"+strconv.Itoa(ts.Endpoint.Port)),
			eq(a, "encryption.keySource", "Microsoft.Batch"))
	})
	w.step("batch account show --query identity", func() error {
		id, err := az.json("batch", "account", "show", "-n", account, "-g", group, "--query", "identity")
		if err != nil {
			return err
		}
		return all(eq(id, "type", "SystemAssigned"), eq(id, "principalId", principal))
	})

	w.step("keyvault create", func() error {
		v, err := az.json("keyvault", "create", "-n", vault, "-g", group, "-l", "westus2", "--enable-purge-protection", "true", "--retention-days", "7")
		if err != nil {
			return err
		}
		return all(eq(v, "name", vault), eq(v, "properties.enablePurgeProtection", true), eq(v, "properties.enableSoftDelete", true),
			eq(v, "properties.softDeleteRetentionInDays", 7.0), eq(v, "properties.vaultUri", url(vault+".vault")+"/"),
			eq(v, "properties.tenantId", tenant),
			// az adds an access policy for the signed-in principal, whom it
			// looks up in Graph by its application id.
			eq(v, "properties.accessPolicies[0].tenantId", tenant), nonEmpty(v, "properties.accessPolicies[0].objectId"),
			contains(v, "properties.accessPolicies[0].permissions.keys", "all"))
	})
	w.step("keyvault list", func() error {
		// az lists managed HSMs along with vaults.
		l, err := az.json("keyvault", "list", "-g", group)
		if err != nil {
			return err
		}
		vaults, _ := l.([]any)
		return all(eq(l, "[0].name", vault), eqAny(len(vaults), "number of vaults", 1))
	})
	w.step("keyvault set-policy", func() error {
		v, err := az.json("keyvault", "set-policy", "-n", vault, "--object-id", principal, "--key-permissions", "get", "wrapKey", "unwrapKey")
		if err != nil {
			return err
		}
		pols, _ := lookup(v, "properties.accessPolicies").([]any)
		for _, p := range pols {
			if str(p, "objectId") == principal {
				return all(eq(p, "tenantId", tenant), sameSet(p, "permissions.keys", "get", "wrapKey", "unwrapKey"))
			}
		}
		return fmt.Errorf("no access policy for the account's principal %s in %v", principal, pols)
	})

	// Keys: `az keyvault key create` and `show` fail in Debian's az 2.45
	// packaging (No module named 'azure.keyvault.v7_0') before sending
	// anything, so keys are made with `az rest` against the vault's REST API,
	// with a token for the vault's audience.
	vaultURL := url(vault + ".vault")
	createKey := func(name string) (string, error) {
		k, err := az.json("rest", "--method", "post", "--uri", vaultURL+"/keys/"+name+"/create?api-version=7.4",
			"--resource", "https://vault.azure.net", "--body", `{"kty":"RSA","key_size":2048,"key_ops":["wrapKey","unwrapKey"]}`)
		if err != nil {
			return "", err
		}
		kid := str(k, "key.kid")
		return kid, all(eq(k, "key.kty", "RSA"), sameSet(k, "key.key_ops", "wrapKey", "unwrapKey"), eq(k, "attributes.enabled", true),
			prefixed(k, "key.kid", vaultURL+"/keys/"+name+"/"))
	}
	setKey := func(kid string) error {
		a, err := az.json("batch", "account", "set", "-n", account, "-g", group,
			"--encryption-key-source", "Microsoft.KeyVault", "--encryption-key-identifier", kid)
		if err != nil {
			return err
		}
		if err := all(eq(a, "encryption.keySource", "Microsoft.KeyVault"), eq(a, "encryption.keyVaultProperties.keyIdentifier", kid)); err != nil {
			return err
		}
		// Which key wraps the account's data key is Custody's own
		// encryptionStatus property, which az's models drop; az rest shows it.
		raw, err := az.json("rest", "--method", "get", "--uri", armAccount+"?api-version=2024-07-01")
		if err != nil {
			return err
		}
		return all(eq(raw, "properties.encryptionStatus.state", "Available"), eq(raw, "properties.encryptionStatus.keyVersionInUse", kid))
	}

	var kid1, kid2, kid3 string
	w.step("key create (az rest)", func() (err error) { kid1, err = createKey("mykey"); return err })
	w.step("batch account set to the key", func() error { return setKey(kid1) })
	w.step("key new version (az rest)", func() (err error) {
		if kid2, err = createKey("mykey"); err == nil && kid2 == kid1 {
			err = fmt.Errorf("the new version has the old identifier %s", kid1)
		}
		return err
	})
	w.step("batch account set to the new version", func() error { return setKey(kid2) })
	w.step("another key (az rest)", func() (err error) { kid3, err = createKey("otherkey"); return err })
	w.step("batch account set to another key", func() error { return setKey(kid3) })
	w.step("batch account set back to Microsoft.Batch", func() error {
		a, err := az.json("batch", "account", "set", "-n", account, "-g", group, "--encryption-key-source", "Microsoft.Batch")
		if err != nil {
			return err
		}
		if err := eq(a, "encryption.keySource", "Microsoft.Batch"); err != nil {
			return err
		}
		raw, err := az.json("rest", "--method", "get", "--uri", armAccount+"?api-version=2024-07-01")
		if err != nil {
			return err
		}
		if v := str(raw, "properties.encryptionStatus.keyVersionInUse"); strings.HasPrefix(v, "https://") {
			return fmt.Errorf("encryptionStatus.keyVersionInUse = %q after going back to Microsoft.Batch, want the platform key", v)
		}
		return nil
	})

	endpoint := "https://" + host(account+".batch") + ":" + strconv.Itoa(ts.Endpoint.Port) + "/"
	w.step("batch account login (Azure AD)", func() error {
		l, err := az.json("batch", "account", "login", "-n", account, "-g", group, "--show")
		if err != nil {
			return err
		}
		return all(eq(l, "account", account), eq(l, "endpoint", endpoint), eq(l, "tokenType", "Bearer"),
			nonEmpty(l, "accessToken"), eq(l, "subscription", sub), eq(l, "tenant", tenant))
	})
	w.step("batch pool create", func() error {
		if _, err := az.run("batch", "pool", "create", "--id", "pool1", "--vm-size", "standard_d2s_v3", "--target-dedicated-nodes", "1",
			"--image", "canonical:0001-com-ubuntu-server-focal:20_04-lts", "--node-agent-sku-id", "batch.node.ubuntu 20.04"); err != nil {
			return err
		}
		p, err := az.json("batch", "pool", "show", "--pool-id", "pool1")
		if err != nil {
			return err
		}
		return all(eq(p, "id", "pool1"), eq(p, "vmSize", "standard_d2s_v3"), eq(p, "targetDedicatedNodes", 1.0), eq(p, "state", "active"))
	})
	w.step("batch job create", func() error {
		if _, err := az.run("batch", "job", "create", "--id", "job1", "--pool-id", "pool1"); err != nil {
			return err
		}
		j, err := az.json("batch", "job", "show", "--job-id", "job1")
		if err != nil {
			return err
		}
		return all(eq(j, "id", "job1"), eq(j, "poolInfo.poolId", "pool1"), eq(j, "state", "active"))
	})
	runTask := func(id, text string) error {
		if _, err := az.run("batch", "task", "create", "--job-id", "job1", "--task-id", id, "--command-line", "/bin/sh -c 'echo "+text+"'"); err != nil {
			return err
		}
		// The pool's node starts as a local process; az takes about a second
		// a call, so polling with it is slow enough.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			task, err := az.json("batch", "task", "show", "--job-id", "job1", "--task-id", id)
			if err != nil {
				return err
			}
			if str(task, "state") == "completed" {
				if err := all(eq(task, "id", id), eq(task, "executionInfo.exitCode", 0.0), eq(task, "executionInfo.result", "success")); err != nil {
					return err
				}
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("task %s not completed after 2 minutes: %v", id, task)
			}
			time.Sleep(500 * time.Millisecond)
		}
		dest := filepath.Join(t.TempDir(), id+"-stdout.txt")
		if _, err := az.run("batch", "task", "file", "download", "--job-id", "job1", "--task-id", id, "--file-path", "stdout.txt", "--destination", dest); err != nil {
			return err
		}
		b, err := os.ReadFile(dest)
		if err != nil {
			return err
		}
		if string(b) != text+"\n" {
			return fmt.Errorf("downloaded stdout.txt = %q, want %q", b, text+"\n")
		}
		return nil
	}
	w.step("batch task create, show, file download (Azure AD)", func() error { return runTask("t1", "hello from az") })

	w.step("batch account login --shared-key-auth", func() error {
		l, err := az.json("batch", "account", "login", "-n", account, "-g", group, "--shared-key-auth", "--show")
		if err != nil {
			return err
		}
		return all(eq(l, "account", account), eq(l, "endpoint", endpoint), nonEmpty(l, "primaryKey"), nonEmpty(l, "secondaryKey"))
	})
	w.step("batch task create, show, file download (Shared Key)", func() error {
		j, err := az.json("batch", "job", "show", "--job-id", "job1")
		if err != nil {
			return err
		}
		if err := eq(j, "id", "job1"); err != nil {
			return err
		}
		return runTask("t2", "hello with a shared key")
	})
	w.step("batch account keys renew, login --shared-key-auth with the new key", func() error {
		before, err := az.json("batch", "account", "keys", "list", "-n", account, "-g", group)
		if err != nil {
			return err
		}
		after, err := az.json("batch", "account", "keys", "renew", "-n", account, "-g", group, "--key-name", "Primary")
		if err != nil {
			return err
		}
		if err := all(nonEmpty(after, "primary"), eq(after, "secondary", str(before, "secondary"))); err != nil {
			return err
		}
		if str(after, "primary") == str(before, "primary") {
			return fmt.Errorf("keys renew left the primary key as it was")
		}
		l, err := az.json("batch", "account", "login", "-n", account, "-g", group, "--shared-key-auth", "--show")
		if err != nil {
			return err
		}
		if err := eq(l, "primaryKey", str(after, "primary")); err != nil {
			return err
		}
		t2, err := az.json("batch", "task", "show", "--job-id", "job1", "--task-id", "t2")
		if err != nil {
			return err
		}
		return eq(t2, "state", "completed")
	})
}

// walk runs the steps in order; the first failure ends the test.
type walk struct {
	t     *testing.T
	start time.Time
}

func (w *walk) step(name string, fn func() error) {
	w.t.Helper()
	start := time.Now()
	err := fn()
	d := time.Since(start).Round(time.Millisecond)
	why, isPending := pending[name]
	switch {
	case err == nil && isPending:
		w.t.Logf("step %q passed in %s (it was marked as waiting for %s: remove the mark)", name, d, why)
	case err == nil:
		w.t.Logf("step %q passed in %s", name, d)
	case isPending:
		w.t.Skipf("step %q waits for %s; the rest of the walk-through is skipped. It failed with: %v", name, why, err)
	default:
		w.t.Fatalf("step %q failed after %s: %v", name, d, err)
	}
}

// az runs the az CLI with its own configuration directory.
type az struct {
	t     *testing.T
	env   []string
	dir   string
	calls int
	// secrets are masked in logs and errors.
	secrets []string
}

func newAz(t *testing.T, ts *servertest.TestServer) *az {
	dir := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"AZURE_CONFIG_DIR=" + filepath.Join(dir, "azure"),
		// No telemetry upload nor survey prompt from a test.
		"AZURE_CORE_COLLECT_TELEMETRY=no",
		"AZURE_CORE_SURVEY_MESSAGE=no",
		"AZURE_CORE_NO_COLOR=true",
		// The test binary re-executes itself as a node agent; az must not
		// inherit that.
		agentEnv + "=",
	}
	return &az{t: t, env: env, dir: dir, secrets: []string{ts.Admin.ClientSecret}}
}

func (a *az) mask(s string) string {
	for _, sec := range a.secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "***")
		}
	}
	return s
}

// command runs one command line (az, or a shell line for the set-up) with
// az's environment.
func (a *az) command(name string, args ...string) (string, error) {
	a.calls++
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = a.env
	cmd.Dir = a.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	line := a.mask(strings.Join(append([]string{name}, args...), " "))
	a.t.Logf("%s (%s)", line, time.Since(start).Round(time.Millisecond))
	if err != nil {
		return "", fmt.Errorf("%s: %v\nstderr:\n%s\nstdout:\n%s", line, err, a.mask(errb.String()), a.mask(out.String()))
	}
	return out.String(), nil
}

// run runs az with args.
func (a *az) run(args ...string) (string, error) { return a.command(azBinary, args...) }

// json runs az with args and -o json, and decodes what it prints.
func (a *az) json(args ...string) (any, error) {
	out, err := a.run(append(args, "-o", "json")...)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("az %s printed no JSON: %v\n%s", a.mask(strings.Join(args, " ")), err, a.mask(out))
	}
	return v, nil
}

// setUp applies the set-up lines: `export NAME=VALUE` lines become az's
// environment, `az ...` lines run through the shell as a user would paste
// them; comments, blank lines and /etc/hosts lines (ensureHosts has made
// sure the names resolve) are skipped.
func (a *az) setUp(lines []string) error {
	for _, l := range lines {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case net.ParseIP(strings.Fields(l)[0]) != nil:
		case strings.HasPrefix(l, "export "):
			out, err := a.command("/bin/sh", "-c", l+"; printf '%s' \"$"+strings.SplitN(strings.TrimPrefix(l, "export "), "=", 2)[0]+"\"")
			if err != nil {
				return err
			}
			a.env = append(a.env, strings.SplitN(strings.TrimPrefix(l, "export "), "=", 2)[0]+"="+out)
		case strings.HasPrefix(l, "az "):
			if _, err := a.command("/bin/sh", "-c", l); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected set-up line %q", a.mask(l))
		}
	}
	return nil
}

// envLines returns what `custody env --az` prints for the server: the
// README's set-up lines for the real az CLI.
func envLines(t *testing.T, ts *servertest.TestServer) []string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := cli.Main(context.Background(), []string{"--data-dir", ts.DataDir(), "env", "--az"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("custody env --az: exit %d: %s", code, errb.String())
	}
	return strings.Split(out.String(), "\n")
}

// ensureHosts makes sure each name resolves to 127.0.0.1 through the system
// resolver, as az needs: in CI (as root) it appends the missing /etc/hosts
// lines, which is the documented set-up; elsewhere it skips the test and
// names the lines.
func ensureHosts(t *testing.T, inCI bool, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		out, _ := exec.Command("getent", "ahostsv4", n).Output()
		if !strings.HasPrefix(string(out), "127.0.0.1 ") {
			missing = append(missing, "127.0.0.1 "+n)
		}
	}
	if len(missing) == 0 {
		return
	}
	lines := strings.Join(missing, "\n") + "\n"
	if !inCI || os.Geteuid() != 0 {
		t.Skipf("az resolves names with the system resolver; add these lines to /etc/hosts:\n%s", lines)
	}
	f, err := os.OpenFile("/etc/hosts", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("append the *.localhost names to /etc/hosts: %v", err)
	}
	b, _ := os.ReadFile("/etc/hosts")
	if len(b) > 0 && b[len(b)-1] != '\n' {
		lines = "\n" + lines
	}
	if _, err := f.WriteString(lines); err != nil {
		t.Fatalf("append to /etc/hosts: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("appended to /etc/hosts:\n%s", strings.TrimLeft(lines, "\n"))
}
