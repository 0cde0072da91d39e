// The Azure Monitor workbook of the app (issue 23), deployed by every `azd up`: sessions started and running, minutes
// and estimated cost per session, the cleanup runs that acted, notification deliveries and failures, and HTTP 4xx/5xx
// by route, over a time range picked at the top. What it shows and where to find it: docs/operations.md, "The
// workbook".
//
// Every query reads the Log Analytics workspace that Application Insights writes to (AppTraces, AppRequests), as the
// alert rules of alerts.bicep do. Each one lives in ./queries/wb-*.kql, loaded here with loadTextContent ({{name}}
// placeholders filled by replace), so that tests/artifacts/test_workbook.py parses and runs the very same text
// against log lines captured from the local stack (tests/reference/logs/). No query filters on time: the workbook's
// TimeRange parameter does (timeContextFromParameter). The workbook's JSON is built here as an object and serialized
// with string(): no hand-escaped KQL inside a JSON string.
param location string = resourceGroup().location
param tags object = {}
param resourceToken string
@description('The azd environment: named in the workbook title.')
param environmentName string
@description('The workspace of Application Insights (workspace-based): the queries read it.')
param logAnalyticsName string
@description('The function app, https://<host>: the workbook links to its dashboard.')
param appUri string
@description('ARR_RATE_STANDARD_PER_HOUR: the estimated cost at the Standard rate. Empty: no estimate.')
param rateStandardPerHour string = ''
@description('ARR_RATE_PREMIUM_PER_HOUR: the estimated cost at the Premium rate. Empty: no estimate.')
param ratePremiumPerHour string = ''
@description('ARR_CURRENCY: the label of the rates.')
param currency string = 'USD'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

var displayName = 'arr-sessions (${environmentName})'

// What every query item shares: a Logs query (queryType 0) on the workspace, over the TimeRange parameter.
var logQuery = {
  version: 'KqlItem/1.0'
  queryType: 0
  resourceType: 'microsoft.operationalinsights/workspaces'
  crossComponentResources: [
    workspace.id
  ]
  timeContextFromParameter: 'TimeRange'
  timeContext: {
    durationMs: 604800000
  }
  size: 0
}

var aboutText = '## arr-sessions\n\nFrom the app\'s own log lines (AppTraces, AppRequests of this workspace): what ran, not who asked. No log line names a session\'s size or requester: the history does, in the [dashboard](${appUri}/api/dashboard) (Usage) and `GET /api/usage?groupBy=size` or `requestedBy`. Minutes and costs here are estimates from the logs; the history has ARR\'s billed minutes.'

var workbookContent = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      name: 'about'
      content: {
        json: aboutText
      }
    }
    {
      type: 9
      name: 'parameters'
      content: {
        version: 'KqlParameterItem/1.0'
        style: 'pills'
        queryType: 0
        resourceType: 'microsoft.operationalinsights/workspaces'
        parameters: [
          {
            id: 'b0d6e0a4-5c1f-4b8e-9a57-3f2d8c1e7a10'
            version: 'KqlParameterItem/1.0'
            name: 'TimeRange'
            label: 'Time range'
            type: 4
            isRequired: true
            value: {
              durationMs: 604800000
            }
            typeSettings: {
              allowCustom: true
              selectableValues: [
                {
                  durationMs: 3600000
                }
                {
                  durationMs: 43200000
                }
                {
                  durationMs: 86400000
                }
                {
                  durationMs: 604800000
                }
                {
                  durationMs: 2592000000
                }
              ]
            }
          }
        ]
      }
    }
    {
      type: 3
      name: 'sessions-started'
      content: union(logQuery, {
        title: 'Sessions started per hour, by the function that started them'
        query: loadTextContent('queries/wb-sessions-started.kql')
        visualization: 'timechart'
      })
    }
    {
      type: 3
      name: 'sessions-running'
      content: union(logQuery, {
        title: 'Sessions running: the most a cleanup run saw in each hour'
        query: loadTextContent('queries/wb-sessions-running.kql')
        visualization: 'timechart'
      })
    }
    {
      type: 3
      name: 'session-minutes'
      content: union(logQuery, {
        title: 'Minutes per session, and the estimated cost in ${currency} at each size\'s rate'
        query: replace(replace(loadTextContent('queries/wb-session-minutes.kql'), '{{rateStandardPerHour}}', rateStandardPerHour), '{{ratePremiumPerHour}}', ratePremiumPerHour)
        visualization: 'table'
      })
    }
    {
      type: 3
      name: 'cleanup-runs'
      content: union(logQuery, {
        title: 'Cleanup runs that stopped, reconciled, failed or deferred something, and why'
        query: loadTextContent('queries/wb-cleanup-runs.kql')
        visualization: 'table'
      })
    }
    {
      type: 3
      name: 'notifications'
      content: union(logQuery, {
        title: 'Notification delivery attempts per hour, by outcome'
        query: loadTextContent('queries/wb-notifications.kql')
        visualization: 'timechart'
      })
    }
    {
      type: 3
      name: 'deliveries-failed'
      content: union(logQuery, {
        title: 'Failed deliveries, per event, with their reasons'
        query: loadTextContent('queries/wb-deliveries-failed.kql')
        visualization: 'table'
      })
    }
    {
      type: 3
      name: 'http-errors'
      content: union(logQuery, {
        title: 'HTTP 4xx and 5xx answers by route'
        query: loadTextContent('queries/wb-http-errors.kql')
        visualization: 'table'
      })
    }
  ]
  fallbackResourceIds: [
    workspace.id
  ]
  '$schema': 'https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json'
}

// A shared workbook, named by a GUID that stays the same for this resource group and environment: every `azd up`
// updates the same workbook (an edit saved in the portal is overwritten by the next one).
resource sharedWorkbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'arr-sessions-workbook', resourceToken)
  location: location
  tags: union(tags, { 'hidden-title': displayName })
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: workspace.id
    version: 'Notebook/1.0'
    serializedData: string(workbookContent)
  }
}

output id string = sharedWorkbook.id
output name string = sharedWorkbook.name
