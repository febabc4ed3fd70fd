using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Journal.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Journal.Tests.Diagnostics;

/// <summary>
/// Reads one meter's instruments with a <see cref="MeterListener"/>, keeping the measurements of one source (one journal,
/// one store, one NBD server: the measurements whose tag <c>tagKey</c> is <c>tagValue</c>).
/// </summary>
public sealed class MeterReader : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, Instrument> _instruments = new();
    private readonly List<(string Instrument, long Value, KeyValuePair<string, object?>[] Tags)> _measurements = new();

    /// <summary>Listens to every instrument of the Journal meter; keeps measurements tagged with <paramref name="journalName"/>.</summary>
    public MeterReader(string journalName) : this(JournalMetrics.MeterName, JournalMetrics.JournalNameTag, journalName) { }

    /// <summary>Listens to every instrument of meter <paramref name="meterName"/>; keeps measurements whose <paramref name="tagKey"/> is <paramref name="tagValue"/>.</summary>
    public MeterReader(string meterName, string tagKey, string tagValue)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name != meterName) return;
            _instruments[instrument.Name] = instrument;
            listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? name = null;
            foreach (var t in tags) if (t.Key == tagKey) name = t.Value as string;
            if (name != tagValue) return;
            lock (_measurements) _measurements.Add((instrument.Name, value, tags.ToArray()));
        });
        _listener.Start();
    }

    /// <summary>The meter's instruments, by name.</summary>
    public IReadOnlyDictionary<string, Instrument> Instruments => _instruments;

    /// <summary>Collects every observable instrument once; returns the source's measurements of that collection.</summary>
    public Dictionary<string, List<(long Value, KeyValuePair<string, object?>[] Tags)>> Collect()
    {
        lock (_measurements) _measurements.Clear();
        _listener.RecordObservableInstruments();
        lock (_measurements)
            return _measurements.GroupBy(m => m.Instrument)
                .ToDictionary(g => g.Key, g => g.Select(m => (m.Value, m.Tags)).ToList());
    }

    /// <summary>The single measurement of <paramref name="instrument"/> (optionally the one whose <paramref name="tag"/> is <paramref name="value"/>).</summary>
    public static long Single(Dictionary<string, List<(long Value, KeyValuePair<string, object?>[] Tags)>> m, string instrument, string? tag = null, string? value = null)
    {
        Assert.True(m.ContainsKey(instrument), $"no measurement of {instrument}");
        var list = m[instrument].Where(x => tag is null || x.Tags.Any(t => t.Key == tag && (string?)t.Value == value)).ToList();
        Assert.True(list.Count == 1, $"{instrument} {tag}={value}: {list.Count} measurements");
        return list[0].Value;
    }

    public void Dispose() => _listener.Dispose();
}

/// <summary>An <see cref="ILogger"/> that keeps every entry (every level enabled).</summary>
public sealed class ListLogger : ILogger, ILoggerFactory, ILoggerProvider
{
    public sealed record Entry(string Category, LogLevel Level, EventId EventId, string Message, Exception? Exception);

    private readonly ConcurrentQueue<Entry> _entries = new();
    private readonly string _category;

    public ListLogger(string category = "(direct)") => _category = category;

    private ListLogger(string category, ConcurrentQueue<Entry> entries)
    {
        _category = category;
        _entries = entries;
    }

    public IReadOnlyList<Entry> Entries => _entries.ToArray();

    public IEnumerable<Entry> WithId(int id) => Entries.Where(e => e.EventId.Id == id);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        _entries.Enqueue(new Entry(_category, logLevel, eventId, formatter(state, exception), exception));

    // As a factory: every logger it creates writes into the same list under its category.
    public ILogger CreateLogger(string categoryName) => new ListLogger(categoryName, _entries);
    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException();
    public void Dispose() { }
}
