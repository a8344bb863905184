package batch

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"

	"software.sslmate.com/src/go-pkcs12"

	"custody"
)

var recordID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// invalid returns a KindInvalid error naming the property it concerns.
func invalid(code, target, format string, args ...any) error {
	e := custody.Errorf(custody.KindInvalid, code, format, args...)
	e.Target = target
	return e
}

// ValidateJobID checks a job id: 1 to 64 letters, digits, hyphens and
// underscores.
func ValidateJobID(id string) error {
	if !recordID.MatchString(id) {
		return invalid("InvalidPropertyValue", "id", "The job id %q is not valid: use 1 to 64 letters, digits, hyphens and underscores.", clip(id))
	}
	return nil
}

// ValidateTaskID checks a task id (the same rule as job ids).
func ValidateTaskID(id string) error {
	if !recordID.MatchString(id) {
		return invalid("InvalidPropertyValue", "id", "The task id %q is not valid: use 1 to 64 letters, digits, hyphens and underscores.", clip(id))
	}
	return nil
}

// clip shortens a value quoted in an error message.
func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	if !utf8.ValidString(s) {
		return "(not valid UTF-8)"
	}
	return s
}

// isoDuration matches ISO-8601 durations as Batch takes them (PT1H, P1D,
// P1DT2H3M4.5S).
var isoDuration = regexp.MustCompile(`^P(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?$`)

func validDuration(what, prop string, v *string) error {
	if v == nil {
		return nil
	}
	if !isoDuration.MatchString(*v) || *v == "P" || strings.HasSuffix(*v, "T") {
		return invalid("InvalidPropertyValue", prop, "%s: %s %q is not an ISO-8601 duration; use a value such as PT1H or P2DT30M.", what, prop, clip(*v))
	}
	return nil
}

func oneOf(what, prop string, v *string, allowed ...string) error {
	if v == nil {
		return nil
	}
	for _, a := range allowed {
		if strings.EqualFold(*v, a) {
			*v = a
			return nil
		}
	}
	return invalid("InvalidPropertyValue", prop, "%s: %s %q is not valid; use one of %s.", what, prop, clip(*v), strings.Join(allowed, ", "))
}

func required(what, prop, v string) error {
	if strings.TrimSpace(v) == "" {
		return invalid("MissingRequiredProperty", prop, "%s: the property %s is required.", what, prop)
	}
	return nil
}

func validDisplayName(what string, v *string) error {
	if v != nil && utf8.RuneCountInString(*v) > 1024 {
		return invalid("InvalidPropertyValue", "displayName", "%s: displayName is longer than 1024 characters.", what)
	}
	return nil
}

func validEnv(what, prop string, env []EnvironmentSetting) error {
	for i, e := range env {
		if strings.TrimSpace(e.Name) == "" {
			return invalid("MissingRequiredProperty", prop, "%s: %s[%d] has no name; every environment setting needs a name.", what, prop, i)
		}
	}
	return nil
}

func validMetadata(what string, md []MetadataItem) error {
	for i, m := range md {
		if strings.TrimSpace(m.Name) == "" {
			return invalid("MissingRequiredProperty", "metadata", "%s: metadata[%d] has no name; every metadata item needs a name.", what, i)
		}
	}
	return nil
}

func validRetryCount(what, prop string, v *int32) error {
	if v != nil && *v < -1 {
		return invalid("InvalidPropertyValue", prop, "%s: %s is %d; use -1 (retry without limit), 0 or a positive number.", what, prop, *v)
	}
	return nil
}

func validateTaskConstraints(what, prop string, c *TaskConstraints) error {
	if c == nil {
		return nil
	}
	if err := validDuration(what, prop+".maxWallClockTime", c.MaxWallClockTime); err != nil {
		return err
	}
	if err := validDuration(what, prop+".retentionTime", c.RetentionTime); err != nil {
		return err
	}
	return validRetryCount(what, prop+".maxTaskRetryCount", c.MaxTaskRetryCount)
}

func validateJobConstraints(what string, c *JobConstraints) error {
	if c == nil {
		return nil
	}
	if err := validDuration(what, "constraints.maxWallClockTime", c.MaxWallClockTime); err != nil {
		return err
	}
	return validRetryCount(what, "constraints.maxTaskRetryCount", c.MaxTaskRetryCount)
}

func validateResourceFiles(what, prop string, rfs []ResourceFile) error {
	for i, rf := range rfs {
		n := 0
		for _, p := range []*string{rf.AutoStorageContainerName, rf.StorageContainerURL, rf.HTTPURL} {
			if p != nil && *p != "" {
				n++
			}
		}
		if n != 1 {
			return invalid("InvalidPropertyValue", prop, "%s: %s[%d] must name exactly one of autoStorageContainerName, storageContainerUrl and httpUrl.", what, prop, i)
		}
	}
	return nil
}

func validateOutputFiles(what string, ofs []OutputFile) error {
	for i := range ofs {
		of := &ofs[i]
		if err := required(what, "outputFiles.filePattern", of.FilePattern); err != nil {
			return err
		}
		if of.Destination.Container == nil || of.Destination.Container.ContainerURL == "" {
			return invalid("MissingRequiredProperty", "outputFiles.destination", "%s: outputFiles[%d] needs destination.container.containerUrl.", what, i)
		}
		for _, h := range of.Destination.Container.UploadHeaders {
			if strings.TrimSpace(h.Name) == "" {
				return invalid("MissingRequiredProperty", "outputFiles.destination.container.uploadHeaders", "%s: outputFiles[%d] has an upload header without a name.", what, i)
			}
		}
		c := of.UploadOptions.UploadCondition
		if err := oneOf(what, "outputFiles.uploadOptions.uploadCondition", &c, "tasksuccess", "taskfailure", "taskcompletion"); err != nil {
			return err
		}
		of.UploadOptions.UploadCondition = c
	}
	return nil
}

func validateUserIdentity(what string, u *UserIdentity) error {
	if u == nil {
		return nil
	}
	if u.Username != nil && u.AutoUser != nil {
		return invalid("InvalidPropertyValue", "userIdentity", "%s: userIdentity takes either username or autoUser, not both.", what)
	}
	if u.AutoUser != nil {
		if err := oneOf(what, "userIdentity.autoUser.scope", u.AutoUser.Scope, "task", "pool"); err != nil {
			return err
		}
		if err := oneOf(what, "userIdentity.autoUser.elevationLevel", u.AutoUser.ElevationLevel, "nonadmin", "admin"); err != nil {
			return err
		}
	}
	return nil
}

func validateContainer(what string, c *TaskContainerSettings) error {
	if c == nil {
		return nil
	}
	if err := required(what, "containerSettings.imageName", c.ImageName); err != nil {
		return err
	}
	if c.WorkingDirectory != nil {
		return oneOf(what, "containerSettings.workingDirectory", c.WorkingDirectory, "taskWorkingDirectory", "containerImageDefault")
	}
	return nil
}

func validateExitOptions(what, prop string, o *ExitOptions) error {
	if o == nil {
		return nil
	}
	if err := oneOf(what, prop+".jobAction", o.JobAction, "none", "disable", "terminate"); err != nil {
		return err
	}
	return oneOf(what, prop+".dependencyAction", o.DependencyAction, "satisfy", "block")
}

func validateExitConditions(what string, e *ExitConditions) error {
	if e == nil {
		return nil
	}
	for i := range e.ExitCodes {
		if err := validateExitOptions(what, "exitConditions.exitCodes.exitOptions", &e.ExitCodes[i].ExitOptions); err != nil {
			return err
		}
	}
	for i := range e.ExitCodeRanges {
		r := &e.ExitCodeRanges[i]
		if r.Start > r.End {
			return invalid("InvalidPropertyValue", "exitConditions.exitCodeRanges", "%s: exitCodeRanges[%d] starts at %d after its end %d.", what, i, r.Start, r.End)
		}
		if err := validateExitOptions(what, "exitConditions.exitCodeRanges.exitOptions", &r.ExitOptions); err != nil {
			return err
		}
	}
	for prop, o := range map[string]*ExitOptions{"preProcessingError": e.PreProcessingError, "fileUploadError": e.FileUploadError, "default": e.Default} {
		if err := validateExitOptions(what, "exitConditions."+prop, o); err != nil {
			return err
		}
	}
	return nil
}

func validateCommonTask(what, commandLine string, display *string, env []EnvironmentSetting, rfs []ResourceFile, c *TaskContainerSettings, u *UserIdentity) error {
	if err := required(what, "commandLine", commandLine); err != nil {
		return err
	}
	if len(commandLine) > 8192 {
		return invalid("InvalidPropertyValue", "commandLine", "%s: commandLine is longer than 8192 characters.", what)
	}
	if err := validDisplayName(what, display); err != nil {
		return err
	}
	if err := validEnv(what, "environmentSettings", env); err != nil {
		return err
	}
	if err := validateResourceFiles(what, "resourceFiles", rfs); err != nil {
		return err
	}
	if err := validateContainer(what, c); err != nil {
		return err
	}
	return validateUserIdentity(what, u)
}

func validatePoolInfo(what string, p *PoolInfo) error {
	if ap := p.AutoPoolSpecification; ap != nil {
		if p.PoolID != "" {
			return invalid("InvalidPropertyValue", "poolInfo", "%s: give either poolInfo.poolId or poolInfo.autoPoolSpecification, not both.", what)
		}
		return validateAutoPool(what, ap)
	}
	if p.PoolID == "" {
		return invalid("MissingRequiredProperty", "poolInfo.poolId", "%s: poolInfo.poolId is required: name the pool the job runs on, or give an autoPoolSpecification.", what)
	}
	if !recordID.MatchString(p.PoolID) {
		return invalid("InvalidPropertyValue", "poolInfo.poolId", "%s: the pool id %q is not valid: use 1 to 64 letters, digits, hyphens and underscores.", what, clip(p.PoolID))
	}
	return nil
}

func validPriority(what string, p *int32) error {
	if p != nil && (*p < -1000 || *p > 1000) {
		return invalid("InvalidPropertyValue", "priority", "%s: priority %d is out of range; use -1000 to 1000.", what, *p)
	}
	return nil
}

func validMaxParallel(what string, p *int32) error {
	if p != nil && *p != -1 && *p <= 0 {
		return invalid("InvalidPropertyValue", "maxParallelTasks", "%s: maxParallelTasks %d is not valid; use -1 (no limit) or a positive number.", what, *p)
	}
	return nil
}

func validateJobSpec(id string, s *JobSpec) error {
	what := "Job " + id
	if err := validatePoolInfo(what, &s.PoolInfo); err != nil {
		return err
	}
	if err := validDisplayName(what, s.DisplayName); err != nil {
		return err
	}
	if err := validPriority(what, s.Priority); err != nil {
		return err
	}
	if err := validMaxParallel(what, s.MaxParallelTasks); err != nil {
		return err
	}
	if err := validateJobConstraints(what, s.Constraints); err != nil {
		return err
	}
	if err := validEnv(what, "commonEnvironmentSettings", s.CommonEnvironmentSettings); err != nil {
		return err
	}
	if err := validMetadata(what, s.Metadata); err != nil {
		return err
	}
	if err := oneOf(what, "onAllTasksComplete", s.OnAllTasksComplete, "noaction", "terminatejob"); err != nil {
		return err
	}
	if err := oneOf(what, "onTaskFailure", s.OnTaskFailure, "noaction", "performexitoptionsjobaction"); err != nil {
		return err
	}
	if n := s.NetworkConfiguration; n != nil {
		if err := required(what, "networkConfiguration.subnetId", n.SubnetID); err != nil {
			return err
		}
	}
	if m := s.JobManagerTask; m != nil {
		w := what + " job manager task"
		if err := ValidateTaskID(m.ID); err != nil {
			return invalid("InvalidPropertyValue", "jobManagerTask.id", "%s: the id %q is not valid: use 1 to 64 letters, digits, hyphens and underscores.", w, clip(m.ID))
		}
		if err := validateCommonTask(w, m.CommandLine, m.DisplayName, m.EnvironmentSettings, m.ResourceFiles, m.ContainerSettings, m.UserIdentity); err != nil {
			return err
		}
		if err := validateOutputFiles(w, m.OutputFiles); err != nil {
			return err
		}
		if err := validateTaskConstraints(w, "jobManagerTask.constraints", m.Constraints); err != nil {
			return err
		}
		if m.RequiredSlots != nil && *m.RequiredSlots < 1 {
			return invalid("InvalidPropertyValue", "jobManagerTask.requiredSlots", "%s: requiredSlots must be 1 or more.", w)
		}
	}
	if p := s.JobPreparationTask; p != nil {
		w := what + " job preparation task"
		if p.ID != nil && !recordID.MatchString(*p.ID) {
			return invalid("InvalidPropertyValue", "jobPreparationTask.id", "%s: the id %q is not valid: use 1 to 64 letters, digits, hyphens and underscores.", w, clip(*p.ID))
		}
		if err := validateCommonTask(w, p.CommandLine, nil, p.EnvironmentSettings, p.ResourceFiles, p.ContainerSettings, p.UserIdentity); err != nil {
			return err
		}
		if err := validateTaskConstraints(w, "jobPreparationTask.constraints", p.Constraints); err != nil {
			return err
		}
	}
	if r := s.JobReleaseTask; r != nil {
		w := what + " job release task"
		if s.JobPreparationTask == nil {
			return invalid("InvalidPropertyValue", "jobReleaseTask", "%s: a job release task needs a job preparation task; add jobPreparationTask or remove jobReleaseTask.", what)
		}
		if r.ID != nil && !recordID.MatchString(*r.ID) {
			return invalid("InvalidPropertyValue", "jobReleaseTask.id", "%s: the id %q is not valid: use 1 to 64 letters, digits, hyphens and underscores.", w, clip(*r.ID))
		}
		if err := validateCommonTask(w, r.CommandLine, nil, r.EnvironmentSettings, r.ResourceFiles, r.ContainerSettings, r.UserIdentity); err != nil {
			return err
		}
		if err := validDuration(w, "jobReleaseTask.maxWallClockTime", r.MaxWallClockTime); err != nil {
			return err
		}
		if err := validDuration(w, "jobReleaseTask.retentionTime", r.RetentionTime); err != nil {
			return err
		}
	}
	return validateJobTasks(id, s)
}

func validateJobUpdate(id string, u *JobUpdate, replace bool) error {
	what := "Job " + id
	if replace && u.PoolInfo == nil {
		return invalid("MissingRequiredProperty", "poolInfo", "%s: poolInfo is required when replacing a job.", what)
	}
	if u.PoolInfo != nil {
		if u.PoolInfo.AutoPoolSpecification != nil {
			return invalid("InvalidPropertyValue", "poolInfo.autoPoolSpecification", "%s: an auto pool is given when the job is created; an update can name an existing pool in poolInfo.poolId only.", what)
		}
		if err := validatePoolInfo(what, u.PoolInfo); err != nil {
			return err
		}
	}
	if err := validPriority(what, u.Priority); err != nil {
		return err
	}
	if err := validMaxParallel(what, u.MaxParallelTasks); err != nil {
		return err
	}
	if err := validateJobConstraints(what, u.Constraints); err != nil {
		return err
	}
	if err := validMetadata(what, u.Metadata); err != nil {
		return err
	}
	if n := u.NetworkConfiguration; n != nil {
		if err := required(what, "networkConfiguration.subnetId", n.SubnetID); err != nil {
			return err
		}
	}
	return oneOf(what, "onAllTasksComplete", u.OnAllTasksComplete, "noaction", "terminatejob")
}

func validateTaskSpec(id string, s *TaskSpec, usesDeps bool) error {
	what := "Task " + id
	if err := validateCommonTask(what, s.CommandLine, s.DisplayName, s.EnvironmentSettings, s.ResourceFiles, s.ContainerSettings, s.UserIdentity); err != nil {
		return err
	}
	if err := validateOutputFiles(what, s.OutputFiles); err != nil {
		return err
	}
	if err := validateTaskConstraints(what, "constraints", s.Constraints); err != nil {
		return err
	}
	if err := validateExitConditions(what, s.ExitConditions); err != nil {
		return err
	}
	if s.RequiredSlots != nil && *s.RequiredSlots < 1 {
		return invalid("InvalidPropertyValue", "requiredSlots", "%s: requiredSlots is %d; it must be 1 or more.", what, *s.RequiredSlots)
	}
	if m := s.MultiInstanceSettings; m != nil {
		if m.NumberOfInstances != nil && *m.NumberOfInstances < 1 {
			return invalid("InvalidPropertyValue", "multiInstanceSettings.numberOfInstances", "%s: numberOfInstances must be 1 or more.", what)
		}
		if err := validateResourceFiles(what, "multiInstanceSettings.commonResourceFiles", m.CommonResourceFiles); err != nil {
			return err
		}
	}
	if a := s.AffinityInfo; a != nil {
		if err := required(what, "affinityInfo.affinityId", a.AffinityID); err != nil {
			return err
		}
	}
	for i, p := range s.ApplicationPackageReferences {
		if strings.TrimSpace(p.ApplicationID) == "" {
			return invalid("MissingRequiredProperty", "applicationPackageReferences", "%s: applicationPackageReferences[%d] has no applicationId.", what, i)
		}
	}
	if t := s.AuthenticationTokenSettings; t != nil {
		for _, a := range t.Access {
			if a != "job" {
				return invalid("InvalidPropertyValue", "authenticationTokenSettings.access", "%s: access %q is not valid; the only value is job.", what, clip(a))
			}
		}
	}
	if dep := s.DependsOn; dep != nil {
		if !usesDeps {
			return invalid("TaskDependenciesNotSpecifiedOnJob", "dependsOn", "%s: the task has dependencies but its job does not allow them; create the job with usesTaskDependencies set to true.", what)
		}
		for _, d := range dep.TaskIDs {
			if !recordID.MatchString(d) {
				return invalid("InvalidPropertyValue", "dependsOn.taskIds", "%s: the dependency %q is not a valid task id.", what, clip(d))
			}
			if strings.EqualFold(d, id) {
				return invalid("InvalidPropertyValue", "dependsOn.taskIds", "%s: a task cannot depend on itself.", what)
			}
		}
		for i, r := range dep.TaskIDRanges {
			if r.Start < 0 || r.Start > r.End {
				return invalid("InvalidPropertyValue", "dependsOn.taskIdRanges", "%s: taskIdRanges[%d] (%d to %d) is not a valid range of non-negative ids.", what, i, r.Start, r.End)
			}
		}
	}
	return nil
}

// MaxCertificateBytes is the largest certificate accepted (decoded).
const MaxCertificateBytes = 10 * 1024

// normalizeThumbprint checks the algorithm (sha1) and thumbprint (hex,
// spaces removed) and returns them lower-cased.
func normalizeThumbprint(alg, tp string) (string, string, error) {
	if !strings.EqualFold(alg, "sha1") {
		return "", "", invalid("InvalidPropertyValue", "thumbprintAlgorithm", "The thumbprint algorithm %q is not supported; it must be sha1.", clip(alg))
	}
	tp = strings.ToLower(strings.ReplaceAll(tp, " ", ""))
	if len(tp) == 0 || len(tp) > 40 {
		return "", "", invalid("InvalidPropertyValue", "thumbprint", "The thumbprint %q is not valid: give up to 40 hexadecimal digits.", clip(tp))
	}
	if _, err := hex.DecodeString(tp + strings.Repeat("0", len(tp)%2)); err != nil {
		return "", "", invalid("InvalidPropertyValue", "thumbprint", "The thumbprint %q is not valid: give up to 40 hexadecimal digits.", clip(tp))
	}
	return "sha1", tp, nil
}

func validateCertificate(tp string, s *CertificateSpec) error {
	what := "Certificate sha1-" + tp
	if s.Format == "" {
		s.Format = "pfx"
	}
	if err := oneOf(what, "certificateFormat", &s.Format, "pfx", "cer"); err != nil {
		return err
	}
	if s.Data == "" {
		return invalid("MissingRequiredProperty", "data", "%s: data is required: the base64-encoded certificate.", what)
	}
	der, err := base64.StdEncoding.DecodeString(s.Data)
	if err != nil {
		return invalid("InvalidPropertyValue", "data", "%s: data is not valid base64.", what)
	}
	if len(der) > MaxCertificateBytes {
		return invalid("InvalidPropertyValue", "data", "%s: the certificate is %d bytes; the limit is %d.", what, len(der), MaxCertificateBytes)
	}
	s.PublicData = nil
	var cert *x509.Certificate
	switch s.Format {
	case "pfx":
		if s.Password == nil || *s.Password == "" {
			return invalid("MissingRequiredProperty", "password", "%s: a pfx certificate needs its password.", what)
		}
		cert, err = decodePFX(der, *s.Password)
		switch {
		case errors.Is(err, pkcs12.ErrIncorrectPassword):
			return invalid("InvalidCertificatePassword", "password", "%s: the password does not open the pfx data; give the password the file was exported with.", what)
		case errors.Is(err, errPFXIterations):
			return invalid("InvalidCertificateData", "data", "%s: the pfx data asks for more than %d key derivation iterations; export it again with a usual iteration count (2,000 to 10,000).", what, MaxPFXIterations)
		case err != nil:
			return invalid("InvalidCertificateData", "data", "%s: data is not a PKCS#12 (pfx) file holding one private key and its certificate, or it uses algorithms this server does not read; export the certificate with its private key as a .pfx file (AES-256 or 3DES) and give its base64.", what)
		}
	case "cer":
		if s.Password != nil && *s.Password != "" {
			return invalid("InvalidPropertyValue", "password", "%s: a cer certificate has no private key, so it takes no password; remove the password.", what)
		}
		s.Password = nil
		if cert, err = decodeCER(der); err != nil {
			return invalid("InvalidCertificateData", "data", "%s: data is not an X.509 certificate; give the base64 of the certificate's DER (a .cer file) or of its PEM text.", what)
		}
	}
	sum := sha1.Sum(cert.Raw)
	if got := hex.EncodeToString(sum[:]); got != tp {
		return invalid("CertificateThumbprintMismatch", "thumbprint", "%s: the thumbprint does not match the certificate, whose SHA-1 thumbprint is %s; give that thumbprint, or check that data holds the intended certificate.", what, got)
	}
	pub := base64.StdEncoding.EncodeToString(cert.Raw)
	s.PublicData = &pub
	return nil
}
