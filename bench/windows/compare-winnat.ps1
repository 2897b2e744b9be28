<#
.SYNOPSIS
  Compares netnat with native WinNAT on the same Hyper-V internal switch, with the same traffic.

.DESCRIPTION
  Run as Administrator on the Hyper-V host. For each NAT in -Nat (winnat, netnat) it sets up the
  NAT the way the seed article does (New-VMSwitch -SwitchType Internal, New-NetIPAddress,
  New-NetNat -- or `netnat New-NetNat` with the netnat daemon running), drives the same traffic
  from a client VM on the switch to a server outside, tears the NAT down, and finally writes a
  report with one row per metric and the columns netnat, winnat, ratio (netnat / winnat):

    udp_64B_pps        iperf3 -u -l 64 -b 0        datagrams/s received by the server
    tcp_gbps           iperf3 (TCP, 1 stream)      Gbit/s received
    rr_latency_p50_us  netperf TCP_RR              median request/response time, us
    rr_latency_p99_us  netperf TCP_RR              99th percentile, us
    new_conns_per_s    netperf TCP_CRR             connect+request+response+close per second

  For the latency rows a ratio below 1 means netnat is faster; for the others above 1 does.
  The report is written as JSON (compare-winnat.json) and Markdown (compare-winnat.md).

  NOT RUN ON REAL WINDOWS BY THE NETNAT AUTHORS: see README.md next to this script.

.EXAMPLE
  .\compare-winnat.ps1 -NetnatExe C:\netnat\netnat.exe -ClientSsh bench@10.100.10.11 -ServerIP 192.0.2.50
#>
[CmdletBinding()]
param(
  # netnat.exe; WinDivert.dll and WinDivert64.sys (WinDivert 2.2) must be in the same folder.
  [Parameter(Mandatory = $true)] [string] $NetnatExe,
  # ssh destination of the client VM on the internal switch (it runs iperf3 and netperf).
  [Parameter(Mandatory = $true)] [string] $ClientSsh,
  # Address of the server outside the NAT (runs `iperf3 -s` and `netserver`).
  [Parameter(Mandatory = $true)] [string] $ServerIP,
  [string] $SwitchName = 'netnat-bench',
  [string] $NatName = 'NetnatBench',
  [string] $GatewayIP = '10.100.1.1',
  [int] $PrefixLength = 16,
  [string] $InternalPrefix = '10.100.0.0/16',
  [int] $Seconds = 10,
  [ValidateSet('winnat', 'netnat')] [string[]] $Nat = @('winnat', 'netnat'),
  [string] $OutDir = '.',
  # Remove an existing NetNat that owns -InternalPrefix (WinNAT allows only one) instead of stopping.
  [switch] $Force
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Fail([string] $what, [string] $fix) {
  throw "compare-winnat: $what; $fix"
}

# --- preflight ------------------------------------------------------------------------------
$principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
  Fail 'not running as Administrator' 'start PowerShell with "Run as administrator"'
}
if (-not (Get-Command New-VMSwitch -ErrorAction SilentlyContinue)) {
  Fail 'the Hyper-V PowerShell module is missing' 'Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V-All, then reboot'
}
if (-not (Get-Command New-NetNat -ErrorAction SilentlyContinue)) {
  Fail 'the NetNat module is missing' 'this needs Windows 10 1607+ / Server 2016+'
}
if (-not (Get-Command ssh -ErrorAction SilentlyContinue)) {
  Fail 'ssh.exe is missing' 'Add-WindowsCapability -Online -Name OpenSSH.Client~~~~0.0.1.0'
}
$NetnatExe = (Resolve-Path $NetnatExe).Path
$netnatDir = Split-Path $NetnatExe
foreach ($f in 'WinDivert.dll', 'WinDivert64.sys') {
  if (-not (Test-Path (Join-Path $netnatDir $f))) {
    Fail "$f is not next to $NetnatExe" 'copy WinDivert.dll and WinDivert64.sys from the WinDivert 2.2 x64 release into that folder'
  }
}
$OutDir = (New-Item -ItemType Directory -Force -Path $OutDir).FullName

# --- the internal switch, as in the article ----------------------------------------------------
if (-not (Get-VMSwitch -Name $SwitchName -ErrorAction SilentlyContinue)) {
  Write-Host "creating internal switch $SwitchName"
  New-VMSwitch -SwitchName $SwitchName -SwitchType Internal | Out-Null
}
$alias = "vEthernet ($SwitchName)"
$adapter = Get-NetAdapter -Name $alias
if (-not (Get-NetIPAddress -InterfaceAlias $alias -IPAddress $GatewayIP -ErrorAction SilentlyContinue)) {
  New-NetIPAddress -IPAddress $GatewayIP -PrefixLength $PrefixLength -InterfaceAlias $alias | Out-Null
}

function Remove-ConflictingNetNat {
  $existing = @(Get-NetNat -ErrorAction SilentlyContinue | Where-Object { $_.InternalIPInterfaceAddressPrefix -eq $InternalPrefix })
  if ($existing.Count -gt 0) {
    if (-not $Force) {
      Fail "WinNAT '$($existing[0].Name)' already owns $InternalPrefix" 'remove it (Remove-NetNat) or rerun with -Force'
    }
    $existing | Remove-NetNat -Confirm:$false
  }
}

# --- traffic (identical for both NATs) ---------------------------------------------------------
function Invoke-Client([string] $cmd) {
  $out = & ssh -o BatchMode=yes -o ConnectTimeout=10 $ClientSsh $cmd 2>&1
  if ($LASTEXITCODE -ne 0) { Fail "client command failed: $cmd`n$out" 'check that the client VM reaches the server through the NAT (ping, iperf3 -c)' }
  return ($out -join "`n")
}

function Measure-Traffic {
  $r = [ordered]@{}
  Invoke-Client "ping -c 3 -W 2 $ServerIP" | Out-Null

  $udp = Invoke-Client "iperf3 -c $ServerIP -u -l 64 -b 0 -t $Seconds -J" | ConvertFrom-Json
  $s = $udp.end.sum
  $r.udp_64B_pps = [double](($s.packets - $s.lost_packets) / $s.seconds)

  $tcp = Invoke-Client "iperf3 -c $ServerIP -t $Seconds -J" | ConvertFrom-Json
  $r.tcp_gbps = [double]($tcp.end.sum_received.bits_per_second / 1e9)

  $rr = (Invoke-Client "netperf -H $ServerIP -t TCP_RR -l $Seconds -P 0 -- -o P50_LATENCY,P99_LATENCY").Trim() -split "`n"
  $v = $rr[-1].Split(',')
  $r.rr_latency_p50_us = [double]$v[0]
  $r.rr_latency_p99_us = [double]$v[1]

  $crr = (Invoke-Client "netperf -H $ServerIP -t TCP_CRR -l $Seconds -P 0 -- -o THROUGHPUT").Trim() -split "`n"
  $r.new_conns_per_s = [double]$crr[-1]
  return $r
}

$results = @{}

if ($Nat -contains 'winnat') {
  Write-Host '== WinNAT'
  Remove-ConflictingNetNat
  New-NetNat -Name $NatName -InternalIPInterfaceAddressPrefix $InternalPrefix | Out-Null
  try { $results.winnat = Measure-Traffic }
  finally { Remove-NetNat -Name $NatName -Confirm:$false }
}

if ($Nat -contains 'netnat') {
  Write-Host '== netnat'
  Remove-ConflictingNetNat
  $log = Join-Path $OutDir 'netnat-daemon.log'
  $daemon = Start-Process -FilePath $NetnatExe -ArgumentList 'daemon' -PassThru -NoNewWindow `
    -RedirectStandardError $log -RedirectStandardOutput (Join-Path $OutDir 'netnat-daemon.out')
  try {
    $deadline = (Get-Date).AddSeconds(15)
    do {
      Start-Sleep -Milliseconds 200  # polling for readiness with a deadline, not synchronisation by sleep
      & $NetnatExe Get-NetNat *> $null
    } while ($LASTEXITCODE -ne 0 -and (Get-Date) -lt $deadline -and -not $daemon.HasExited)
    if ($LASTEXITCODE -ne 0) { Fail 'the netnat daemon did not answer within 15 s' "read $log" }
    & $NetnatExe New-NetNat -Name $NatName -InternalIPInterfaceAddressPrefix $InternalPrefix
    if ($LASTEXITCODE -ne 0) { Fail 'netnat New-NetNat failed' "read $log" }
    $results.netnat = Measure-Traffic
    & $NetnatExe Remove-NetNat -Name $NatName
  }
  finally {
    if (-not $daemon.HasExited) { Stop-Process -Id $daemon.Id }
  }
}

# --- report --------------------------------------------------------------------------------
$metrics = 'udp_64B_pps', 'tcp_gbps', 'rr_latency_p50_us', 'rr_latency_p99_us', 'new_conns_per_s'
$rows = foreach ($m in $metrics) {
  $n = if ($results.ContainsKey('netnat')) { $results.netnat[$m] } else { $null }
  $w = if ($results.ContainsKey('winnat')) { $results.winnat[$m] } else { $null }
  $ratio = if ($null -ne $n -and $w) { [math]::Round($n / $w, 3) } else { $null }
  [ordered]@{ metric = $m; netnat = $n; winnat = $w; ratio = $ratio }
}
$report = [ordered]@{
  schema       = 'netnat-bench-e2e/1'
  platform     = 'windows'
  host         = $env:COMPUTERNAME
  os           = (Get-CimInstance Win32_OperatingSystem).Caption
  duration_s   = $Seconds
  switch       = $SwitchName
  internal_if  = $adapter.ifIndex
  ratio_is     = 'netnat / winnat (latency rows: below 1 is better; others: above 1 is better)'
  rows         = @($rows)
}
$json = Join-Path $OutDir 'compare-winnat.json'
$report | ConvertTo-Json -Depth 5 | Set-Content -Encoding UTF8 $json

$md = @('| metric | netnat | winnat | ratio |', '|---|---:|---:|---:|')
foreach ($r in $rows) { $md += "| $($r.metric) | $($r.netnat) | $($r.winnat) | $($r.ratio) |" }
$mdPath = Join-Path $OutDir 'compare-winnat.md'
$md | Set-Content -Encoding UTF8 $mdPath
$md | ForEach-Object { Write-Host $_ }
Write-Host "report: $json, $mdPath"
