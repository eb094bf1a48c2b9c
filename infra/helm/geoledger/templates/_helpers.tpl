{{/*
Names and shared pieces of the geoledger chart.
*/}}

{{/* The release's name prefix of every object, within the 63 characters a label allows. */}}
{{- define "geoledger.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "geoledger.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: geoledger
{{- end -}}

{{/* Selector labels of one component; call with (list $ "command-api"). */}}
{{- define "geoledger.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The image of one service; call with (list $ "command-api"). */}}
{{- define "geoledger.image" -}}
{{- $root := index . 0 -}}
{{- printf "%s/%s:%s" $root.Values.image.prefix (index . 1) ($root.Values.image.tag | default $root.Chart.AppVersion) -}}
{{- end -}}

{{/* Fully qualified name of a headless Service, which HAProxy resolves to the ready pods. */}}
{{- define "geoledger.podsHost" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s-pods.%s.svc.%s" (include "geoledger.fullname" $root) (index . 1) $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end -}}

{{/*
The database URL of one role from its Secret, as an env entry; call with (list $ "owner"),
(list $ "projector") or (list $ "query"). Only the migration Job connects as the owner.
*/}}
{{- define "geoledger.databaseUrlEnv" -}}
{{- $root := index . 0 -}}
{{- $secret := dict "owner" $root.Values.database.existingSecret "projector" $root.Values.database.projectorSecret "query" $root.Values.database.querySecret -}}
- name: GEOLEDGER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ index $secret (index . 1) }}
      key: {{ $root.Values.database.urlKey }}
{{- end -}}

{{/*
The NATS user and password of one service, as env entries, when nats.auth.existingSecret is
set; call with (list $ "commandApi") or (list $ "projector").
*/}}
{{- define "geoledger.natsAuthEnv" -}}
{{- $root := index . 0 -}}
{{- $who := index . 1 -}}
{{- $auth := $root.Values.nats.auth -}}
{{- if $auth.existingSecret -}}
- name: GEOLEDGER_NATS_USER
  value: {{ index $auth (printf "%sUser" $who) | quote }}
- name: GEOLEDGER_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $auth.existingSecret }}
      key: {{ index $auth (printf "%sPasswordKey" $who) }}
{{- end }}
{{- end -}}

{{/* Where an API finds its credentials: files of the auth Secret, mounted at
/etc/geoledger/auth, so no secret sits in the environment. */}}
{{- define "geoledger.authEnv" -}}
{{- $a := .Values.auth -}}
{{- with $a.tokensKey }}
- name: GEOLEDGER_AUTH_TOKENS_FILE
  value: /etc/geoledger/auth/{{ . }}
{{- end }}
{{- with $a.jwtSecretKey }}
- name: GEOLEDGER_AUTH_JWT_SECRET_FILE
  value: /etc/geoledger/auth/{{ . }}
{{- end }}
{{- with $a.jwtPublicKeyKey }}
- name: GEOLEDGER_AUTH_JWT_PUBLIC_KEY_FILE
  value: /etc/geoledger/auth/{{ . }}
{{- end }}
{{- with $a.jwtAudience }}
- name: GEOLEDGER_AUTH_JWT_AUDIENCE
  value: {{ . | quote }}
{{- end }}
{{- with $a.jwtIssuer }}
- name: GEOLEDGER_AUTH_JWT_ISSUER
  value: {{ . | quote }}
{{- end }}
- name: GEOLEDGER_AUTH_WRITE_SCOPE
  value: {{ $a.writeScope | quote }}
- name: GEOLEDGER_AUTH_READ_SCOPE
  value: {{ $a.readScope | quote }}
- name: GEOLEDGER_AUTH_READS
  value: {{ $a.reads | quote }}
{{- end -}}

{{/* Pod-level settings shared by every geoledger pod: no API token, non-root, default seccomp. */}}
{{- define "geoledger.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Container-level hardening: the images need no writable root and no capabilities. */}}
{{- define "geoledger.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* Placement of one component's pods; call with the component's values. */}}
{{- define "geoledger.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The HTTP probes of a geoledger service. Readiness takes a pod out of rotation as soon as
/status reports a dependency down; liveness, which restarts the pod, waits a full minute of
failures, since /status also fails while NATS or PostgreSQL is away and a restart does not help.
*/}}
{{- define "geoledger.probes" -}}
readinessProbe:
  httpGet:
    path: /status
    port: http
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /status
    port: http
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 6
{{- end -}}

{{/* Keeps serving while the pod leaves the endpoints and HAProxy's DNS answers. */}}
{{- define "geoledger.lifecycle" -}}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.preStopSleepSeconds }}
{{- end -}}
