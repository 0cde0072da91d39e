// Alert rules on the app's own telemetry (issue 23), deployed by every `azd up`, and an action group that e-mails
// them when main.bicep's alertsEmail (ALERTS_EMAIL) is set. Without an e-mail the rules are deployed all the same:
// they cost little, they show as fired alerts in the portal (Monitor > Alerts), and an address can be added later
// with `azd env set ALERTS_EMAIL ...` and `azd provision`.
//
// Every rule is a log search alert over the Log Analytics workspace that Application Insights writes to
// (AppTraces: the Python logging lines; AppRequests: HTTP invocations). The queries live in ./queries/*.kql, loaded
// here with loadTextContent, so that tests/artifacts/test_alerts.py parses and runs the very same text against log
// lines captured from the local stack (tests/reference/logs/). They read Message, never customDimensions: the
// Functions host does not forward a Python record's `extra` fields to Application Insights (docs/operations.md,
// "Logs in Application Insights"). What to do when each one fires: docs/operations.md, "Alerts".
param location string = resourceGroup().location
param tags object = {}
param resourceToken string
@description('The workspace of Application Insights (workspace-based): the rules query it.')
param logAnalyticsName string
@description('E-mail the alerts here. Empty: no action group, the rules only show in the portal.')
param alertsEmail string = ''
@description('Minutes without a completed cleanup run before the heartbeat alert: three cleanup intervals.')
@allowed([15, 30, 45])
param cleanupSilenceMinutes int = 15
@description('More sessions than this seen by one cleanup run fires an alert.')
@minValue(1)
param maxSessions int = 10
@description('Minutes with at least one session running in every cleanup run before the long-session alert.')
@minValue(60)
@maxValue(2820)
param sessionReadyMinutes int = 480
@description('Percent of HTTP invocations answered 5xx over 15 minutes (with at least 20 of them) that fires.')
@minValue(1)
@maxValue(100)
param http5xxPercent int = 5

var emailOn = !empty(alertsEmail)
var actions = emailOn ? [actionGroup.id] : []

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (emailOn) {
  name: 'ag-arr-alerts-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'arr-alerts'
    enabled: true
    emailReceivers: [
      {
        name: 'arr-alerts-email'
        emailAddress: alertsEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Shared by every rule: the workspace as scope, query validation skipped (on a new deployment AppTraces and
// AppRequests exist only once the app has sent its first line, and a rule naming an absent table fails to deploy).

// Why: the promise is that no session is forgotten, and the cleanup keeps it. A run that never happens writes no
// failure anywhere: only a missing summary line shows it. When it fires: is the app running (Overview, Diagnose)?
// is lease_cleanup listed and enabled (Functions)? did a deployment fail (Deployment Center)? Then run POST
// /api/cleanup by hand and look at GET /api/cleanup/runs.
resource cleanupHeartbeat 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'arr-cleanup-heartbeat-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'arr-sessions: no cleanup run for ${cleanupSilenceMinutes} minutes'
    description: 'The lease_cleanup timer logged no summary line ("cleanup (...)") for three intervals. docs/operations.md, Alerts.'
    severity: 1
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT${cleanupSilenceMinutes}M'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: loadTextContent('queries/cleanup-heartbeat.kql')
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actions
    }
  }
}

// Why: a run that completes but could not stop a session (errors) or ran out of time (deferred) leaves sessions
// billing; one such run is a blip (ARR throttled, a timeout), two in a row is a pattern. When it fires: GET
// /api/cleanup/runs shows each run's errors and deferred ids with their reasons; the AppTraces lines "cleanup of
// <id> failed" and "ARR ... -> 4xx/5xx" of the same OperationId say why.
resource cleanupTroubled 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'arr-cleanup-troubled-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'arr-sessions: two cleanup runs in a row with errors or deferred work'
    description: 'The last two cleanup summary lines both report errors or deferred sessions. docs/operations.md, Alerts.'
    severity: 2
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT${cleanupSilenceMinutes}M'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: loadTextContent('queries/cleanup-troubled.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actions
    }
  }
}

// Why: a message in a -poison queue is work the host gave up on after five failed runs (a notification nobody
// received, a webhook action never carried out); nothing retries it. A log rule on the host's own line names the
// queue; the storage account's QueueMessageCount metric cannot: it is one number for the whole account, published
// hourly, and it includes arr-notify, where delayed retries wait by design. When it fires: read the message
// (Storage browser, <queue>-poison), find why its runs failed (AppTraces of OperationName DeliverNotification,
// WatchSession or CarryOutHookDelivery, SeverityLevel >= 3), fix, then move it back or delete it.
resource poisonMessages 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'arr-poison-messages-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'arr-sessions: messages moved to a poison queue'
    description: 'The host moved a message to <queue>-poison (one alert per queue). docs/operations.md, Alerts.'
    severity: 2
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: loadTextContent('queries/poison-messages.kql')
          timeAggregation: 'Total'
          metricMeasureColumn: 'Messages'
          dimensions: [
            {
              name: 'Queue'
              operator: 'Include'
              values: ['*']
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actions
    }
  }
}

// Why: sessions bill by the minute; more at once than the team ever uses is a loop in a caller, a webhook rule
// that starts too much, or a leak. When it fires: GET /api/sessions (who, since when, why), then stop what should
// not run (POST /api/sessions/{id}/stop, or POST /api/cleanup?mode=nightly to stop all that are not kept alive).
resource sessionsAtOnce 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'arr-sessions-at-once-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'arr-sessions: more than ${maxSessions} sessions at once'
    description: 'A cleanup run saw more running sessions (stopped + kept) than the threshold. docs/operations.md, Alerts.'
    severity: 2
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: replace(loadTextContent('queries/sessions-at-once.kql'), '{{maxSessions}}', string(maxSessions))
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actions
    }
  }
}

// Why: "a session has run all weekend" is the failure this app exists to prevent. The cleanup's summary line has
// counts, not ids, so this fires when every run of the period kept at least one session: one long session, or
// back-to-back ones with no pause (docs/operations.md says how to tell them apart). When it fires: GET
// /api/sessions, and the session's events (GET /api/sessions/{id}/events): keepAlive, an override, or a lease
// someone extended; ARR_MAX_SESSION_MINUTES caps them all.
resource sessionsRunningTooLong 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'arr-session-too-long-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'arr-sessions: sessions running for ${sessionReadyMinutes} minutes without a pause'
    description: 'Every cleanup run of the period kept at least one session running. docs/operations.md, Alerts.'
    severity: 2
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    overrideQueryTimeRange: 'P2D'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: replace(loadTextContent('queries/sessions-running-too-long.kql'), '{{readyMinutes}}', string(sessionReadyMinutes))
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actions
    }
  }
}

// Why: 5xx answers are the app failing its callers (ARR down or throttling past the retries, storage refused, a
// bug); 4xx are callers' mistakes and are not counted. When it fires: AppRequests | where toint(ResultCode) >= 500
// | summarize count() by Name, ResultCode; then the AppTraces of those OperationIds (SeverityLevel >= 3).
resource http5xxRate 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'arr-http-5xx-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'arr-sessions: more than ${http5xxPercent}% of requests answered 5xx'
    description: 'The share of 5xx answers over 15 minutes, with at least 20 requests. docs/operations.md, Alerts.'
    severity: 1
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: replace(replace(loadTextContent('queries/http-5xx-rate.kql'), '{{minRequests}}', '20'), '{{percent}}', string(http5xxPercent))
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actions
    }
  }
}

output actionGroupId string = emailOn ? actionGroup.id : ''
output ruleNames array = [
  cleanupHeartbeat.name
  cleanupTroubled.name
  poisonMessages.name
  sessionsAtOnce.name
  sessionsRunningTooLong.name
  http5xxRate.name
]
