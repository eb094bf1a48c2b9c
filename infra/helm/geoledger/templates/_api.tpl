{{/*
One HTTP API (command-api or query-api): its Deployment, a Service, a headless Service that
HAProxy resolves to the ready pods, a HorizontalPodAutoscaler and a PodDisruptionBudget.
Call with (dict "root" $ "name" "command-api" "values" .Values.commandApi "port" 8081
"database" true-or-false "auth" true-or-false); with auth (and .Values.auth.enabled), the
pods get the credentials of .Values.auth as files.
*/}}
{{- define "geoledger.api" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $fullname := printf "%s-%s" (include "geoledger.fullname" $root) .name -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "geoledger.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "geoledger.selectorLabels" (list $root .name) | nindent 6 }}
  # A new pod must be ready before an old one leaves, so capacity never drops in a rollout.
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "geoledger.selectorLabels" (list $root .name) | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # Settings changes roll the pods, which read their environment only at start.
        checksum/env: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "geoledger.podSecurity" $root | nindent 6 }}
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .name }}
          image: {{ include "geoledger.image" (list $root .name) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ .port }}
          envFrom:
            - configMapRef:
                name: {{ include "geoledger.fullname" $root }}-env
          env:
            - name: GEOLEDGER_LISTEN
              value: "0.0.0.0:{{ .port }}"
            {{- if .database }}
            {{- include "geoledger.databaseUrlEnv" (list $root "query") | nindent 12 }}
            {{- else }}
            {{- include "geoledger.natsAuthEnv" (list $root "commandApi") | nindent 12 }}
            {{- end }}
            {{- if and .auth $root.Values.auth.enabled }}
            {{- include "geoledger.authEnv" $root | nindent 12 }}
            {{- end }}
          {{- include "geoledger.probes" $root | nindent 10 }}
          {{- include "geoledger.lifecycle" $root | nindent 10 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          {{- include "geoledger.containerSecurity" $root | nindent 10 }}
          {{- if and .auth $root.Values.auth.enabled }}
          volumeMounts:
            - name: auth
              mountPath: /etc/geoledger/auth
              readOnly: true
          {{- end }}
      {{- if and .auth $root.Values.auth.enabled }}
      volumes:
        - name: auth
          secret:
            secretName: {{ $root.Values.auth.existingSecret }}
      {{- end }}
      {{- include "geoledger.placement" $v | nindent 6 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "geoledger.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  type: ClusterIP
  selector:
    {{- include "geoledger.selectorLabels" (list $root .name) | nindent 4 }}
  ports:
    - name: http
      port: {{ .port }}
      targetPort: http
---
# HAProxy balances least-connections over the pods themselves, which a ClusterIP would hide.
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}-pods
  labels:
    {{- include "geoledger.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  clusterIP: None
  publishNotReadyAddresses: false
  selector:
    {{- include "geoledger.selectorLabels" (list $root .name) | nindent 4 }}
  ports:
    - name: http
      port: {{ .port }}
      targetPort: http
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "geoledger.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $fullname }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- if $v.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "geoledger.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
spec:
  minAvailable: {{ $v.pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "geoledger.selectorLabels" (list $root .name) | nindent 6 }}
{{- end }}
{{- end -}}
