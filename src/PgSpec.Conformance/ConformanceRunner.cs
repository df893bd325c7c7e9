using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using PgSpec.Protocol;
using PgSpec.Client;

namespace PgSpec.Conformance;

/// <summary>What a run found, as one word (and one exit code of <c>pgspec conform</c>).</summary>
public enum ConformanceOutcome
{
    /// <summary>Every scenario passed (or was refused by, or does not apply to, a server PgSpec did not start) and every reachable message round-tripped.</summary>
    Passed,

    /// <summary>PgSpec's codec or session failed; whatever the servers did besides.</summary>
    Failed,

    /// <summary>PgSpec did not fail, but a server PgSpec did not start broke the protocol.</summary>
    ServerViolatedProtocol,
}

/// <summary>The outcome of a run.</summary>
public sealed class ConformanceReport
{
    /// <summary>The servers.</summary>
    public required IReadOnlyList<Target> Targets { get; init; }

    /// <summary>Every scenario against every server.</summary>
    public required IReadOnlyList<ScenarioResult> Results { get; init; }

    /// <summary>What the codec saw.</summary>
    public required Coverage Coverage { get; init; }

    /// <summary>Every scenario ran (not a chosen few), so every reachable message must have been seen.</summary>
    public bool FullRun { get; init; } = true;

    /// <summary>Every message of the spec, in name order.</summary>
    public static IReadOnlyList<PgMessageDescriptor> Messages => PgProtocolSpec.Messages;

    /// <summary>
    /// The messages carried inside others, by family: the replication messages in CopyData, then
    /// pgoutput's in XLogData (each family in name order). The logical-replication scenario streams
    /// them; each is tallied under <see cref="Coverage.SubMessageKey"/> and, like the protocol's own,
    /// must be seen against every server PgSpec started (but those <see cref="Coverage.UnreachableSubMessages"/>
    /// names, pgoutput's newer than the protocol version the server has, <see cref="Scenarios.PgOutputVersionFor"/>, and
    /// the two-phase ones when its prepared transactions are disabled: <see cref="IsReachable"/>).
    /// </summary>
    public static IReadOnlyList<PgMessageDescriptor> SubMessages { get; } =
        [.. PgSpec.Protocol.Replication.ReplicationMessages.Descriptors, .. PgSpec.Protocol.PgOutput.PgOutputMessages.Descriptors];

    /// <summary>The tally key of a message of <see cref="SubMessages"/>.</summary>
    public static string KeyOf(PgMessageDescriptor subMessage)
    {
        ArgumentNullException.ThrowIfNull(subMessage);
        return Coverage.SubMessageKey(subMessage.Family!, subMessage.Name);
    }

    /// <summary>
    /// Whether <paramref name="target"/> sends or takes the carried message: pgoutput's messages of a
    /// version newer than its major has (a major not known yet counts as new enough), and the two-phase
    /// ones (version 3's) when its prepared transactions are disabled, are not.
    /// </summary>
    public static bool IsReachable(PgMessageDescriptor subMessage, Target target)
    {
        ArgumentNullException.ThrowIfNull(subMessage);
        ArgumentNullException.ThrowIfNull(target);
        if (Coverage.UnreachableSubMessages.ContainsKey(KeyOf(subMessage)))
        {
            return false;
        }

        if (subMessage.Family != PgSpec.Protocol.PgOutput.PgOutputMessages.FamilyName)
        {
            return true;
        }

        return (target.Major == 0 || subMessage.SinceVersion <= Scenarios.PgOutputVersionFor(target.Major))
            && (subMessage.SinceVersion != 3 || target.PreparedTransactions != false);
    }

    /// <summary>How PgSpec failed; empty when it did not (a server's violations of the protocol are <see cref="ServerViolations"/>).</summary>
    public IReadOnlyList<string> Problems
    {
        get
        {
            var problems = new List<string>();
            foreach (ScenarioResult result in Results.Where(r => r.Status == ScenarioStatus.Failed))
            {
                problems.Add($"{result.Server}: scenario {result.Scenario} failed: {result.Detail}");
            }

            foreach (((string server, string message), MessageTally tally) in Coverage.All.OrderBy(p => p.Key))
            {
                if (!tally.RoundTripped && tally.Seen > 0 && !IsServerViolation(server, message))
                {
                    problems.Add($"{server}: {message} did not round-trip: {string.Join("; ", tally.Failures)}");
                }
            }

            foreach (Target target in Targets.Where(t => t.Managed && FullRun))
            {
                foreach (PgMessageDescriptor message in Messages)
                {
                    if (!Coverage.Unreachable.ContainsKey(message.Name) && !Coverage.All.ContainsKey((target.Key, message.Name)))
                    {
                        problems.Add($"{target.Key}: {message.Name} was never seen");
                    }
                }

                foreach (PgMessageDescriptor message in SubMessages)
                {
                    if (IsReachable(message, target) && !Coverage.All.ContainsKey((target.Key, KeyOf(message))))
                    {
                        problems.Add($"{target.Key}: {KeyOf(message)} was never seen");
                    }
                }
            }

            return problems;
        }
    }

    /// <summary>
    /// How servers PgSpec did not start broke the protocol (not PgSpec's failures): scenarios that
    /// ended in <see cref="ScenarioStatus.ServerViolation"/>, and message types no spec defines.
    /// </summary>
    public IReadOnlyList<string> ServerViolations
    {
        get
        {
            var violations = new List<string>();
            foreach (ScenarioResult result in Results.Where(r => r.Status == ScenarioStatus.ServerViolation))
            {
                violations.Add($"{result.Server}: scenario {result.Scenario}: {result.Detail}");
            }

            foreach (((string server, string message), MessageTally tally) in Coverage.All.OrderBy(p => p.Key))
            {
                if (tally.Seen > 0 && IsServerViolation(server, message))
                {
                    violations.Add($"{server}: {string.Join("; ", tally.Failures)}");
                }
            }

            return violations;
        }
    }

    /// <summary>True when every scenario passed (or was refused by a server PgSpec did not start), every reachable message round-tripped and no server broke the protocol.</summary>
    public bool Passed => Outcome == ConformanceOutcome.Passed;

    /// <summary>Passed; PgSpec failed (whatever the servers did); or only servers PgSpec did not start broke the protocol.</summary>
    public ConformanceOutcome Outcome
        => Problems.Count > 0 ? ConformanceOutcome.Failed
        : ServerViolations.Count > 0 ? ConformanceOutcome.ServerViolatedProtocol
        : ConformanceOutcome.Passed;

    /// <summary>A message type no spec defines ("Unknown", or a family's "Replication.Unknown"), from a server PgSpec did not start: the server's violation.</summary>
    private bool IsServerViolation(string server, string message)
        => (message == "Unknown" || message.EndsWith(".Unknown", StringComparison.Ordinal)) && Targets.Any(t => t.Key == server && !t.Managed);

    /// <summary>The coverage table.</summary>
    public string ToTable()
    {
        var text = new StringBuilder();
        text.AppendLine("Servers:");
        foreach (Target target in Targets)
        {
            text.AppendLine($"  {target.Key,-4} {target.Description}");
        }

        text.AppendLine();
        text.AppendLine("Scenarios:");
        foreach (IGrouping<string, ScenarioResult> scenario in Results.GroupBy(r => r.Scenario))
        {
            text.Append("  ").Append(scenario.Key.PadRight(22));
            foreach (ScenarioResult r in scenario)
            {
                text.Append($" {r.Server}:{Mark(r.Status)}");
            }

            string details = string.Join("; ", scenario.Where(r => r.Status != ScenarioStatus.Passed).Select(r => $"{r.Server}: {r.Detail}"));
            text.AppendLine(details.Length > 0 ? "   " + details : "");
        }

        text.AppendLine();
        text.AppendLine("Messages (seen/decoded/re-encoded identical, per server):");
        text.Append("  ").Append("message".PadRight(34)).Append("dir  ");
        foreach (Target target in Targets)
        {
            text.Append(target.Key.PadRight(16));
        }

        text.AppendLine("scenarios");
        foreach (PgMessageDescriptor message in Messages)
        {
            string direction = message.Frontend && message.Backend ? "F&B" : message.Frontend ? "F" : "B";
            text.Append("  ").Append(message.Name.PadRight(34)).Append(direction.PadRight(5));
            if (Coverage.Unreachable.TryGetValue(message.Name, out string? reason))
            {
                text.AppendLine("unreachable: " + reason);
                continue;
            }

            var scenarios = new SortedSet<string>(StringComparer.Ordinal);
            foreach (Target target in Targets)
            {
                if (Coverage.All.TryGetValue((target.Key, message.Name), out MessageTally? tally))
                {
                    string cell = $"{(tally.RoundTripped ? "ok" : "FAIL")} {tally.Seen}/{tally.Decoded}/{tally.Reencoded}";
                    text.Append(cell.PadRight(16));
                    scenarios.UnionWith(tally.Scenarios);
                }
                else
                {
                    text.Append((target.Managed && FullRun ? "NOT SEEN" : "-").PadRight(16));
                }
            }

            text.AppendLine(Shorten(scenarios));
        }

        text.AppendLine();
        text.AppendLine("Messages carried in CopyData (replication) and in XLogData (pgoutput), seen/decoded/re-encoded identical:");
        int width = Math.Max(34, SubMessages.Max(m => KeyOf(m).Length) + 1);
        foreach (PgMessageDescriptor message in SubMessages)
        {
            string key = KeyOf(message);
            string direction = message.Frontend && message.Backend ? "F&B" : message.Frontend ? "F" : "B";
            text.Append("  ").Append(key.PadRight(width)).Append(direction.PadRight(5));
            if (Coverage.UnreachableSubMessages.TryGetValue(key, out string? reason))
            {
                text.AppendLine("unreachable: " + reason);
                continue;
            }

            var scenarios = new SortedSet<string>(StringComparer.Ordinal);
            foreach (Target target in Targets)
            {
                if (Coverage.All.TryGetValue((target.Key, key), out MessageTally? tally))
                {
                    text.Append(($"{(tally.RoundTripped ? "ok" : "FAIL")} {tally.Seen}/{tally.Decoded}/{tally.Reencoded}" + " ").PadRight(20));
                    scenarios.UnionWith(tally.Scenarios);
                }
                else
                {
                    text.Append((target.Managed && FullRun && IsReachable(message, target) ? "NOT SEEN" : "-").PadRight(20));
                }
            }

            text.AppendLine(Shorten(scenarios));
        }

        text.AppendLine();
        IReadOnlyList<string> problems = Problems;
        IReadOnlyList<string> violations = ServerViolations;
        if (problems.Count == 0 && violations.Count == 0)
        {
            text.AppendLine($"PASSED: {Results.Count(r => r.Status == ScenarioStatus.Passed)} scenario runs passed; every reachable message round-tripped byte for byte.");
        }

        if (problems.Count > 0)
        {
            text.AppendLine($"FAILED: {problems.Count} problem(s):");
            foreach (string problem in problems)
            {
                text.AppendLine("  " + problem);
            }
        }

        if (violations.Count > 0)
        {
            text.AppendLine(problems.Count == 0
                ? $"SERVER VIOLATED THE PROTOCOL: PgSpec did not fail, but {violations.Count} time(s) the server sent what the protocol does not allow:"
                : $"SERVER VIOLATED THE PROTOCOL besides ({violations.Count}, not PgSpec's failures):");
            foreach (string violation in violations)
            {
                text.AppendLine("  " + violation);
            }
        }

        return text.ToString();
    }

    private static string Shorten(SortedSet<string> scenarios)
        => scenarios.Count <= 4 ? string.Join(", ", scenarios) : string.Join(", ", scenarios.Take(4)) + $", +{scenarios.Count - 4}";

    private static string Mark(ScenarioStatus status) => status switch
    {
        ScenarioStatus.Passed => "ok",
        ScenarioStatus.Failed => "FAIL",
        ScenarioStatus.Refused => "refused",
        ScenarioStatus.ServerViolation => "violation",
        _ => "n/a",
    };

    /// <summary>The same report for machines.</summary>
    public string ToJson()
    {
        var document = new
        {
            passed = Passed,
            outcome = Outcome switch
            {
                ConformanceOutcome.Passed => "passed",
                ConformanceOutcome.Failed => "failed",
                _ => "server-violated-protocol",
            },
            problems = Problems,
            serverViolations = ServerViolations,
            servers = Targets.Select(t => new { key = t.Key, description = t.Description, managed = t.Managed }),
            scenarios = Results.Select(r => new { server = r.Server, scenario = r.Scenario, status = r.Status.ToString().ToLowerInvariant(), detail = r.Detail, seconds = Math.Round(r.Duration.TotalSeconds, 3) }),
            messages = Messages.Select(m => new
            {
                name = m.Name,
                frontend = m.Frontend,
                backend = m.Backend,
                unreachable = Coverage.Unreachable.TryGetValue(m.Name, out string? reason) ? reason : null,
                servers = Targets.ToDictionary(
                    t => t.Key,
                    t => Coverage.All.TryGetValue((t.Key, m.Name), out MessageTally? tally)
                        ? new { seen = tally.Seen, decoded = tally.Decoded, reencoded = tally.Reencoded, roundTripped = tally.RoundTripped, scenarios = tally.Scenarios.ToArray(), failures = tally.Failures.ToArray() }
                        : null),
            }),
            subMessages = SubMessages.Select(m => new
            {
                family = m.Family,
                name = m.Name,
                key = KeyOf(m),
                frontend = m.Frontend,
                backend = m.Backend,
                unreachable = Coverage.UnreachableSubMessages.TryGetValue(KeyOf(m), out string? reason) ? reason : null,
                servers = Targets.ToDictionary(
                    t => t.Key,
                    t => Coverage.All.TryGetValue((t.Key, KeyOf(m)), out MessageTally? tally)
                        ? new { seen = tally.Seen, decoded = tally.Decoded, reencoded = tally.Reencoded, roundTripped = tally.RoundTripped, scenarios = tally.Scenarios.ToArray(), failures = tally.Failures.ToArray() }
                        : null),
            }),
        };
        return JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true });
    }
}

/// <summary>Runs the scenarios against the servers.</summary>
public static class ConformanceRunner
{
    /// <summary>
    /// Runs every scenario (or those named) against every target; reports progress line by line.
    /// <paramref name="observe"/>, given a scenario's name, gives a callback for the traffic of each
    /// session the scenario opens (to record it).
    /// </summary>
    public static async Task<ConformanceReport> RunAsync(IReadOnlyList<Target> targets, Action<string>? progress, IReadOnlyCollection<string>? only = null, TimeSpan? timeout = null, Func<string, Action<PgTraffic>>? observe = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var coverage = new Coverage();
        var results = new List<ScenarioResult>();
        foreach ((string name, Func<ScenarioContext, Task> run) in Scenarios.All)
        {
            if (only is { Count: > 0 } && !only.Contains(name))
            {
                continue;
            }

            foreach (Target target in targets)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var context = new ScenarioContext(target, coverage, name, timeout ?? TimeSpan.FromSeconds(30)) { Observe = observe };
                var watch = Stopwatch.StartNew();
                ScenarioResult result;
                try
                {
                    await run(context).WaitAsync(cancellationToken).ConfigureAwait(false);
                    result = new ScenarioResult(target.Key, name, ScenarioStatus.Passed, "", watch.Elapsed);
                }
                catch (NotApplicableException e)
                {
                    result = new ScenarioResult(target.Key, name, ScenarioStatus.NotApplicable, e.Message, watch.Elapsed);
                }
                catch (RefusedException e) when (!target.Managed)
                {
                    result = new ScenarioResult(target.Key, name, ScenarioStatus.Refused, e.Message, watch.Elapsed);
                }
                catch (PgServerException e) when (!target.Managed)
                {
                    result = new ScenarioResult(target.Key, name, ScenarioStatus.Refused, $"{e.SqlState}: {e.Fields.Message}", watch.Elapsed);
                }
                catch (PgConnectionException e) when (!target.Managed && e.Message.Contains("does not support", StringComparison.Ordinal))
                {
                    result = new ScenarioResult(target.Key, name, ScenarioStatus.Refused, e.Message, watch.Elapsed);
                }
                catch (PgConnectionException e) when (!target.Managed && e.InnerException is PgProtocolException { Error.IsClosedInsideMessage: true } inside)
                {
                    // A server that stops in the middle of a message: its fault, as a malformed one is.
                    result = new ScenarioResult(target.Key, name, ScenarioStatus.ServerViolation, "the server violated the protocol: " + inside.Error, watch.Elapsed);
                }
                catch (PgProtocolException e) when (!target.Managed)
                {
                    // PgSpec's decoder and session judge what a server sends; PostgreSQL itself passes them (the servers PgSpec starts).
                    result = new ScenarioResult(target.Key, name, ScenarioStatus.ServerViolation, "the server violated the protocol: " + e.Error, watch.Elapsed);
                }
                catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    result = new ScenarioResult(target.Key, name, ScenarioStatus.Failed, $"{e.GetType().Name}: {e.Message}", watch.Elapsed);
                }

                results.Add(result);
                progress?.Invoke($"{result.Server,-4} {name,-22} {result.Status.ToString().ToLowerInvariant(),-13} {result.Duration.TotalSeconds.ToString("0.00", CultureInfo.InvariantCulture)} s {(result.Detail.Length > 0 ? "  " + result.Detail : "")}");
            }
        }

        return new ConformanceReport { Targets = targets, Results = results, Coverage = coverage, FullRun = only is not { Count: > 0 } };
    }
}
