// arr-sessions on Azure Functions Flex Consumption: `azd up` deploys this file (subscription scope).
// Plain resource declarations only (no registry modules), so that every file can be checked offline: see
// tests/artifacts/test_infra.py. Each ARR_* parameter below is one app setting of arr_core/settings.py, with the
// default the app itself has (docs/operations.md "Settings").
targetScope = 'subscription'

// ---- the azd environment ------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; with the subscription and location it makes the short unique token in every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource: one that offers the Flex Consumption plan.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of whoever runs azd (AZURE_PRINCIPAL_ID): gets read access to the history table, to look at it while debugging. Empty: nobody.')
param principalId string = ''

// ---- optional resource names (empty: generated from abbreviations.json and the token) ---------------------------

param resourceGroupName string = ''
param functionAppName string = ''
param functionPlanName string = ''
param identityName string = ''
param storageAccountName string = ''
param logAnalyticsName string = ''
param applicationInsightsName string = ''
param keyVaultName string = ''

// ---- hosting --------------------------------------------------------------------------------------------------------

@description('Memory of each instance, in MB. Execution is billed per GB-second of this size.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Most instances the app may scale out to (the Flex Consumption minimum is 40).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances for the HTTP functions: 0 (the default) bills nothing while idle; each one bills its memory around the clock.')
@minValue(0)
@maxValue(10)
param alwaysReadyInstances int = 0

@description('Days the Log Analytics workspace keeps logs (30 is included in the ingestion price).')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

// ---- where the app keeps session history ----------------------------------------------------------------------------

@description('Resource id of an existing storage account for the history table (the app identity gets Storage Table Data Contributor on it). Empty: the table lives in the storage account created here.')
param historyStorageAccountResourceId string = ''

// ---- the ARR account --------------------------------------------------------------------------------------------------

@description('Resource id of an existing Remote Rendering account (/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.MixedReality/remoteRenderingAccounts/<name>): the app identity gets Remote Rendering Client on it. Empty: no role is assigned (the emulator, or a key).')
param arrAccountResourceId string = ''

@description('ARR_ACCOUNT_ID: the ARR account id (a GUID, from the account Overview).')
param arrAccountId string

@description('ARR_ACCOUNT_DOMAIN: the account domain, e.g. eastus.mixedreality.azure.com (the STS is at https://sts.<domain>).')
param arrAccountDomain string

@description('ARR_REGION: region of the rendering sessions, e.g. westeurope (the endpoint is https://remoterendering.<region>.mixedreality.azure.com).')
param arrRegion string

@description('ARR_ENDPOINT: the session API base URL, when not the one of ARR_REGION (e.g. an emulator). Empty: from ARR_REGION.')
param arrEndpoint string = ''

@description('ARR_STS_ENDPOINT: the token service, when not https://sts.<domain>. Empty: from ARR_ACCOUNT_DOMAIN.')
param arrStsEndpoint string = ''

@secure()
@description('ARR_ACCOUNT_KEY: leave empty to use the managed identity (recommended). A key given here is stored in a Key Vault created for it and reaches the app as a Key Vault reference, never as a plain app setting.')
param arrAccountKey string = ''

// ---- the app's policies (docs/operations.md "Settings"; defaults as in arr_core/services/settings.py) ----------------------------------------

@description('ARR_HISTORY_TABLE: name of the history table.')
@minLength(3)
@maxLength(63)
param arrHistoryTable string = 'arrsessions'

@description('ARR_DEFAULT_SIZE: size when a start gives none.')
@allowed(['Standard', 'Premium'])
param arrDefaultSize string = 'Standard'

@description('ARR_DEFAULT_LEASE_MINUTES: lease when a start gives none.')
@minValue(0)
@maxValue(1440)
param arrDefaultLeaseMinutes int = 60

@description('ARR_MAX_LEASE_MINUTES: larger leases are refused; at least ARR_DEFAULT_LEASE_MINUTES.')
@minValue(0)
@maxValue(1440)
param arrMaxLeaseMinutes int = 480

@description('ARR_POLL_SECONDS: Retry-After while a session starts.')
@minValue(1)
@maxValue(300)
param arrPollSeconds int = 10

@description('ARR_CLEANUP_SCHEDULE: six-field NCRONTAB (seconds first) or a TimeSpan hh:mm:ss of the lease_cleanup timer.')
param arrCleanupSchedule string = '0 */5 * * * *'

@description('ARR_NIGHTLY_SHUTDOWN_AT: local time of the nightly shutdown, e.g. 22:00. Empty: no nightly shutdown.')
param arrNightlyShutdownAt string = ''

@description('ARR_TIME_ZONE: IANA zone of the nightly time, e.g. Europe/Amsterdam.')
param arrTimeZone string = 'UTC'

@description('ARR_MAX_SESSION_MINUTES: stop sessions Ready longer than this, whatever their lease. Empty: no limit.')
param arrMaxSessionMinutes string = ''

@description('ARR_STUCK_STARTING_MINUTES: stop sessions Starting longer than this.')
@minValue(1)
param arrStuckStartingMinutes int = 30

@description('ARR_STOP_CONCURRENCY: concurrent stops in a cleanup.')
@minValue(1)
@maxValue(200)
param arrStopConcurrency int = 16

@description('ARR_RATE_STANDARD_PER_HOUR: hourly rate of a Standard session for estimated cost. Empty: no estimate.')
param arrRateStandardPerHour string = ''

@description('ARR_RATE_PREMIUM_PER_HOUR: hourly rate of a Premium session for estimated cost. Empty: no estimate.')
param arrRatePremiumPerHour string = ''

@description('ARR_CURRENCY: label of the rates.')
param arrCurrency string = 'USD'

@description('ARR_PUBLIC_BASE_URL: the app public URL (custom domain, API Management) for Location headers and links. Empty: https://<app>.azurewebsites.net.')
param arrPublicBaseUrl string = ''

@description('ARR_HOOK_RULES: the inbound webhooks rules, a JSON array (docs/integrations.md). Empty: every event is acknowledged and ignored.')
param arrHookRules string = ''

@secure()
@description('ARR_HOOK_STANDARD_SECRETS: Standard Webhooks secrets (whsec_...), separated by spaces. Empty: /api/hooks/standard refuses every delivery.')
param arrHookStandardSecrets string = ''

@secure()
@description('ARR_HOOK_GITHUB_SECRETS: GitHub webhook secrets, separated by spaces. Empty: /api/hooks/github refuses every delivery.')
param arrHookGithubSecrets string = ''

// Generated once by azd (kept in the environment's config, so every `azd up` keeps it) and never prompted for.
@secure()
@metadata({ azd: { type: 'generate', config: { length: 48, noSpecial: true } } })
@description('ARR_LINK_SIGNING_KEY: the key of signed ready links (a 202 Location that Logic Apps and Power Automate poll without a function key). Several keys separated by spaces rotate it.')
@minLength(32)
param arrLinkSigningKey string

@description('ARR_REQUEST_TIMEOUT_SECONDS: time budget of one HTTP request, retries included (5-100).')
@minValue(5)
@maxValue(100)
param arrRequestTimeoutSeconds int = 90

@description('ARR_CLEANUP_BUDGET_SECONDS: a cleanup run acts for at most this long (5-90).')
@minValue(5)
@maxValue(90)
param arrCleanupBudgetSeconds int = 60

@description('ARR_STOP_WARNING_MINUTES: warn subscribers this many minutes before an automatic stop (0: never; 0-240).')
@minValue(0)
@maxValue(240)
param arrStopWarningMinutes int = 30

@description('ARR_IDLE_AFTER_READY_MINUTES: idle stop of a Ready session with no client heartbeat this long after Ready (0-1440; empty or 0: off).')
param arrIdleAfterReadyMinutes string = ''

@description('ARR_IDLE_MINUTES: idle stop of a Ready session with no client heartbeat this long since its last one (0-1440; empty or 0: off).')
param arrIdleMinutes string = ''

@description('ARR_MAX_SESSIONS: at most this many active sessions at once; empty: no cap.')
param arrMaxSessions string = ''

@description('ARR_MAX_SESSIONS_PER_REQUESTER: at most this many active sessions per requester; empty: no cap.')
param arrMaxSessionsPerRequester string = ''

@description('ARR_BUDGET: a monthly budget as JSON (docs/operations.md, "Budget"); empty: none.')
param arrBudget string = ''

@description('ARR_POOLS: warm pools, a JSON array (docs/operations.md, "Warm pools"); empty: none.')
param arrPools string = ''

// ---- optional: senders of the inbound webhooks (app/hooks.bicep; all off by default) --------------------------------
// Turn them on only once the code is deployed (after the first `azd up`), then `azd provision`: see app/hooks.bicep.

@description('Resource id of an existing storage account whose Microsoft.Storage.BlobCreated events go to POST /api/hooks/eventgrid (an Event Grid subscription on it). Empty: none.')
param hooksEventGridStorageAccountResourceId string = ''

@description('Event Grid subject filter, e.g. /blobServices/default/containers/converted/blobs/. Empty: any blob of the account.')
param hooksEventGridSubjectBeginsWith string = ''

@description('Event Grid subject filter, e.g. .arrAsset. Empty: any.')
param hooksEventGridSubjectEndsWith string = ''

@description('Event Grid delivery attempts of one event (Event Grid default 30): a BlobCreated delivered hours late starts a session nobody may want.')
@minValue(1)
@maxValue(30)
param hooksEventGridMaxDeliveryAttempts int = 10

@description('Minutes Event Grid keeps trying one event (Event Grid default 1440).')
@minValue(1)
@maxValue(1440)
param hooksEventGridEventTimeToLiveInMinutes int = 60

@description('An action group (ag-arr-hooks-<token>) whose webhook receiver posts to POST /api/hooks/alerts, common alert schema: attach it to your alert rules.')
param hooksAlerts bool = false

@description('Also e-mail this address from that action group (and from the budget). Empty: no e-mail.')
param hooksAlertEmail string = ''

@description('Monthly budget of the resource group, in the billing currency; at 100% of actual cost it notifies the action group, which posts to the alert hook. 0: no budget.')
@minValue(0)
param hooksMonthlyBudget int = 0

@description('The budget\'s start: the first day of a month, yyyy-MM-01, not before this month. Azure cannot change it later: set it once and keep it.')
param hooksBudgetStartDate string = ''

// Generated once by azd, like arrLinkSigningKey: the values of the function keys that the Event Grid subscription
// and the action group put in their URLs (a key of EventGridHook only, and one of AlertHook only).
@secure()
@metadata({ azd: { type: 'generate', config: { length: 48, noSpecial: true } } })
@description('Key of the EventGridHook function that the Event Grid subscription sends (?code=).')
@minLength(32)
param hooksEventGridKey string

@secure()
@metadata({ azd: { type: 'generate', config: { length: 48, noSpecial: true } } })
@description('Key of the AlertHook function that the action group sends (?code=).')
@minLength(32)
param hooksAlertKey string

// ---- alerts (app/alerts.bicep; docs/operations.md "Alerts") -------------------------------------------------------------
// The rules are always deployed; the e-mail only when an address is given.

@description('E-mail the alert rules of app/alerts.bicep here (an action group). Empty: no e-mail; the rules still fire in the portal.')
param alertsEmail string = ''

@description('Minutes without a completed cleanup run before the heartbeat alert: three cleanup intervals (15 for the default schedule, every 5 minutes).')
@allowed([15, 30, 45])
param alertsCleanupSilenceMinutes int = 15

@description('Alert when one cleanup run sees more running sessions than this.')
@minValue(1)
param alertsMaxSessions int = 10

@description('Alert when sessions have been running, without a pause, for this many minutes.')
@minValue(60)
@maxValue(2820)
param alertsSessionReadyMinutes int = 480

@description('Alert when more than this percent of HTTP requests over 15 minutes are answered 5xx.')
@minValue(1)
@maxValue(100)
param alerts5xxPercent int = 5

// ---- names --------------------------------------------------------------------------------------------------------------

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var appName = empty(functionAppName) ? '${abbrs.webSitesFunctions}arr-${resourceToken}' : functionAppName
var hostStorageName = empty(storageAccountName) ? '${abbrs.storageStorageAccounts}${resourceToken}' : storageAccountName
var vaultName = empty(keyVaultName) ? '${abbrs.keyVaultVaults}${resourceToken}' : keyVaultName
var deploymentContainerName = 'app-package-${take(appName, 32)}-${take(resourceToken, 7)}'
var arrKeySecretName = 'arr-account-key'

// An existing account named by resource id: /subscriptions/<sub>/resourceGroups/<rg>/providers/<type>/<name>.
// Each ternary evaluates only its chosen branch, so an empty id is never split.
var historyIsExternal = !empty(historyStorageAccountResourceId)
var historySubscriptionId = historyIsExternal ? split(historyStorageAccountResourceId, '/')[2] : subscription().subscriptionId
var historyResourceGroupName = historyIsExternal ? split(historyStorageAccountResourceId, '/')[4] : rg.name
var historyAccountName = historyIsExternal ? last(split(historyStorageAccountResourceId, '/')) : hostStorageName
var historyTableEndpoint = 'https://${historyAccountName}.table.${environment().suffixes.storage}'
// The queues of the session watcher and the notifications: in the host's account, where the queue triggers read.
var queueEndpoint = 'https://${hostStorageName}.queue.${environment().suffixes.storage}'

var arrAccountGiven = !empty(arrAccountResourceId)
var arrSubscriptionId = arrAccountGiven ? split(arrAccountResourceId, '/')[2] : subscription().subscriptionId
var arrResourceGroupName = arrAccountGiven ? split(arrAccountResourceId, '/')[4] : rg.name
var arrAccountName = arrAccountGiven ? last(split(arrAccountResourceId, '/')) : ''

var useAccountKey = !empty(arrAccountKey)

// ---- resources ---------------------------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-11-01' = {
  name: empty(resourceGroupName) ? '${abbrs.resourcesResourceGroups}${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity './core/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: empty(identityName) ? '${abbrs.managedIdentityUserAssignedIdentities}arr-${resourceToken}' : identityName
    location: location
    tags: tags
  }
}

module monitoring './core/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: empty(logAnalyticsName) ? '${abbrs.operationalInsightsWorkspaces}${resourceToken}' : logAnalyticsName
    applicationInsightsName: empty(applicationInsightsName) ? '${abbrs.insightsComponents}${resourceToken}' : applicationInsightsName
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module storage './core/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: hostStorageName
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    historyTableName: historyIsExternal ? '' : arrHistoryTable
  }
}

module vault './core/keyvault.bicep' = if (useAccountKey) {
  name: 'keyvault'
  scope: rg
  params: {
    name: vaultName
    location: location
    tags: tags
    secretName: arrKeySecretName
    secretValue: arrAccountKey
    readerPrincipalId: identity.outputs.principalId
  }
}

// Every setting the app reads (arr_core/settings.py ENV_NAMES) but AzureWebJobsStorage: the host reaches its storage
// by identity (AzureWebJobsStorage__* in app/api.bicep) and the history store by ARR_HISTORY_TABLE_ENDPOINT.
var arrSettings = {
  ARR_ACCOUNT_ID: arrAccountId
  ARR_ACCOUNT_DOMAIN: arrAccountDomain
  ARR_ENDPOINT: arrEndpoint
  ARR_REGION: arrRegion
  ARR_STS_ENDPOINT: arrStsEndpoint
  ARR_MANAGED_IDENTITY_CLIENT_ID: identity.outputs.clientId
  ARR_HISTORY_TABLE_ENDPOINT: historyTableEndpoint
  ARR_QUEUE_ENDPOINT: queueEndpoint
  ARR_HISTORY_TABLE: arrHistoryTable
  ARR_DEFAULT_SIZE: arrDefaultSize
  ARR_DEFAULT_LEASE_MINUTES: string(arrDefaultLeaseMinutes)
  ARR_MAX_LEASE_MINUTES: string(arrMaxLeaseMinutes)
  ARR_POLL_SECONDS: string(arrPollSeconds)
  ARR_CLEANUP_SCHEDULE: arrCleanupSchedule
  ARR_NIGHTLY_SHUTDOWN_AT: arrNightlyShutdownAt
  ARR_TIME_ZONE: arrTimeZone
  ARR_MAX_SESSION_MINUTES: arrMaxSessionMinutes
  ARR_STUCK_STARTING_MINUTES: string(arrStuckStartingMinutes)
  ARR_STOP_CONCURRENCY: string(arrStopConcurrency)
  ARR_RATE_STANDARD_PER_HOUR: arrRateStandardPerHour
  ARR_RATE_PREMIUM_PER_HOUR: arrRatePremiumPerHour
  ARR_CURRENCY: arrCurrency
  ARR_PUBLIC_BASE_URL: arrPublicBaseUrl
  ARR_LINK_SIGNING_KEY: arrLinkSigningKey
  ARR_HOOK_RULES: arrHookRules
  ARR_HOOK_STANDARD_SECRETS: arrHookStandardSecrets
  ARR_HOOK_GITHUB_SECRETS: arrHookGithubSecrets
  ARR_REQUEST_TIMEOUT_SECONDS: string(arrRequestTimeoutSeconds)
  ARR_CLEANUP_BUDGET_SECONDS: string(arrCleanupBudgetSeconds)
  ARR_STOP_WARNING_MINUTES: string(arrStopWarningMinutes)
  ARR_IDLE_AFTER_READY_MINUTES: arrIdleAfterReadyMinutes
  ARR_IDLE_MINUTES: arrIdleMinutes
  ARR_POOLS: arrPools
  ARR_BUDGET: arrBudget
  ARR_MAX_SESSIONS: arrMaxSessions
  ARR_MAX_SESSIONS_PER_REQUESTER: arrMaxSessionsPerRequester
}

// The key, only when one is given: a Key Vault reference resolved by the app identity (keyVaultReferenceIdentity).
var arrKeySetting = useAccountKey ? { ARR_ACCOUNT_KEY: '@Microsoft.KeyVault(VaultName=${vaultName};SecretName=${arrKeySecretName})' } : {}

module api './app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: appName
    planName: empty(functionPlanName) ? '${abbrs.webServerFarms}${resourceToken}' : functionPlanName
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyInstances: alwaysReadyInstances
    appSettings: union(arrSettings, arrKeySetting)
  }
  // Its roles exist before the app starts: it reaches storage, telemetry, ARR and the key only by identity.
  dependsOn: [
    vault
    rbac
    historyRbac
    arrRbac
  ]
}

// The app identity's roles on what this deployment created: host storage (blobs, queues) and telemetry.
module rbac './app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// Its role on the history table's account: the one created here, or the existing one named above.
module historyRbac './app/rbac-history.bicep' = {
  name: 'history-rbac-${resourceToken}'
  scope: resourceGroup(historySubscriptionId, historyResourceGroupName)
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: historyIsExternal ? historyAccountName : storage.outputs.name
    userPrincipalId: principalId
  }
}

// Its role on the existing ARR account: sessions only (Remote Rendering Client), no conversions.
module arrRbac './app/rbac-arr.bicep' = if (arrAccountGiven) {
  name: 'arr-rbac-${resourceToken}'
  scope: resourceGroup(arrSubscriptionId, arrResourceGroupName)
  params: {
    principalId: identity.outputs.principalId
    arrAccountName: arrAccountName
  }
}

// The inbound webhooks' senders, only when a hooks* parameter asks for one. (Written with ?: rather than ||, which
// the offline checks in tests/artifacts/test_infra.py do not evaluate.) A key is passed only to a sender that uses it.
var hooksEventGrid = !empty(hooksEventGridStorageAccountResourceId)
var hooksActionGroup = hooksAlerts ? true : hooksMonthlyBudget > 0
module hooks './app/hooks.bicep' = if (hooksEventGrid ? true : hooksActionGroup) {
  name: 'hooks-${resourceToken}'
  scope: rg
  params: {
    appName: api.outputs.name
    appUri: api.outputs.uri
    tags: tags
    resourceToken: resourceToken
    eventGridStorageAccountResourceId: hooksEventGridStorageAccountResourceId
    eventGridSubjectBeginsWith: hooksEventGridSubjectBeginsWith
    eventGridSubjectEndsWith: hooksEventGridSubjectEndsWith
    eventGridMaxDeliveryAttempts: hooksEventGridMaxDeliveryAttempts
    eventGridEventTimeToLiveInMinutes: hooksEventGridEventTimeToLiveInMinutes
    eventGridKey: hooksEventGrid ? hooksEventGridKey : ''
    alertActionGroup: hooksAlerts
    alertEmail: hooksAlertEmail
    alertKey: hooksActionGroup ? hooksAlertKey : ''
    monthlyBudget: hooksMonthlyBudget
    budgetStartDate: hooksBudgetStartDate
  }
}

// The alert rules (always) and their e-mail action group (when alertsEmail is set): docs/operations.md, "Alerts".
module alerts './app/alerts.bicep' = {
  name: 'alerts-${resourceToken}'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    alertsEmail: alertsEmail
    cleanupSilenceMinutes: alertsCleanupSilenceMinutes
    maxSessions: alertsMaxSessions
    sessionReadyMinutes: alertsSessionReadyMinutes
    http5xxPercent: alerts5xxPercent
  }
}

// ---- outputs (azd keeps them in .azure/<env>/.env) -----------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_HISTORY_TABLE_ENDPOINT string = historyTableEndpoint

// ---- the workbook (app/workbook.bicep; docs/operations.md "The workbook") ----------------------------------------------
// Always deployed: sessions, cleanup runs, notifications and HTTP errors from the app's logs, with the dashboard linked.
module workbook './app/workbook.bicep' = {
  name: 'workbook-${resourceToken}'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    environmentName: environmentName
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    appUri: api.outputs.uri
    rateStandardPerHour: arrRateStandardPerHour
    ratePremiumPerHour: arrRatePremiumPerHour
    currency: arrCurrency
  }
}
