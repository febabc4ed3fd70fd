using Spectre.Console;

namespace Journal.Tools;

/// <summary>
/// A progress bar for long work, drawn only when standard output is an interactive terminal; when output is
/// redirected (or in tests) the work runs with a reporter that does nothing, so nothing extra is printed.
/// </summary>
internal static class ProgressBar
{
    /// <summary>Runs <paramref name="work"/>, giving it a reporter for (done, total) in units of the caller's choice.</summary>
    public static async Task<T> RunAsync<T>(ToolConsole console, string title, double total, Func<IProgress<double>, Task<T>> work)
    {
        if (!console.IsTerminal) return await work(new Progress(null)).ConfigureAwait(false);

        T result = default!;
        await AnsiConsole.Progress()
            .AutoClear(true)
            .HideCompleted(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: Math.Max(1, total));
                result = await work(new Progress(task)).ConfigureAwait(false);
                task.Value = task.MaxValue;
            }).ConfigureAwait(false);
        return result;
    }

    private sealed class Progress(ProgressTask? task) : IProgress<double>
    {
        public void Report(double value)
        {
            if (task is not null) task.Value = Math.Min(value, task.MaxValue);
        }
    }

    /// <summary>Runs <paramref name="work"/> of unknown length under a spinner (on a terminal only).</summary>
    public static async Task<T> SpinAsync<T>(ToolConsole console, string title, Func<Task<T>> work)
    {
        if (!console.IsTerminal) return await work().ConfigureAwait(false);
        T result = default!;
        await AnsiConsole.Status().StartAsync(Markup.Escape(title), async _ => result = await work().ConfigureAwait(false)).ConfigureAwait(false);
        return result;
    }
}
