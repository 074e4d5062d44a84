#!/bin/sh
# Every log id the module writes (MPnnnnn in mod_micropay/*.c, with the
# APLOG level of its call) must be in docs/mod_micropay.md's log table with
# that level, and every id in the table must still be written somewhere:
# admins grep and alert on these ids, so a table that drifts from the code
# is a broken interface. A call whose level is chosen at run time
# (cond ? APLOG_WARNING : APLOG_INFO) is documented as "warn or info".
set -u
top=${top_srcdir:-$(dirname "$0")/..}
doc=$top/docs/mod_micropay.md
perl -e '
use strict; use warnings;
my ($doc, @src) = @ARGV;
my %name = (EMERG=>"emerg", ALERT=>"alert", CRIT=>"crit", ERR=>"error", WARNING=>"warn",
            NOTICE=>"notice", INFO=>"info", DEBUG=>"debug");
my (%code, @bad);
for my $f (@src) {
    open my $fh, "<", $f or die "$f: $!";
    local $/; my $text = <$fh>; close $fh;
    $text =~ s{/\*.*?\*/}{ }gs;                        # comments name ids too
    while ($text =~ /\bap_log_[a-z]*error\s*\((.*?)\)\s*;/gs) {
        my $call = $1;
        my @ids = $call =~ /"(MP\d{5}):/g;
        next unless @ids;
        my ($before) = $call =~ /^(.*?)"MP\d{5}:/s;
        my %lv;
        while ($before =~ /\bAPLOG_([A-Z]+)\b/g) { $lv{$name{$1}} = 1 if exists $name{$1}; }
        my $levels = join(" or ", sort keys %lv);
        for my $id (@ids) {
            if ($levels eq "") { push @bad, "$f: $id is logged at a level not named in the call"; next; }
            my $prev = $code{$id};
            $code{$id} = $prev && $prev ne $levels ? join(" or ", sort(keys %{{ map { $_ => 1 } split(/ or /, "$prev or $levels") }})) : $levels;
        }
    }
    # The broker'"'"'s audit lines are built into x->outcome and written by
    # one ap_log_rerror at info once their transaction committed.
    while ($text =~ /->outcome\s*=\s*apr_psprintf\s*\([^"]*"(MP\d{5}):/gs) {
        $code{$1} = "info";
    }
    # an id in a string that is not in a logging call: its level is unknown
    for my $id ($text =~ /"(MP\d{5}):/g) {
        push @bad, "$f: $id appears outside an ap_log_*error call" unless exists $code{$id};
    }
}
my %docd;
open my $dh, "<", $doc or die "$doc: $!";
while (<$dh>) {
    next unless /^\|\s*(MP\d{5})\s*\|\s*([a-z ]+?)\s*\|/;
    push @bad, "docs: $1 is listed twice" if exists $docd{$1};
    $docd{$1} = join(" or ", sort split(/ or /, $2));
}
close $dh;
for my $id (sort keys %code) {
    if (!exists $docd{$id}) { push @bad, "$id ($code{$id}) is logged but not in the log table of $doc"; }
    elsif ($docd{$id} ne $code{$id}) { push @bad, "$id is logged at $code{$id} but documented as $docd{$id}"; }
}
for my $id (sort keys %docd) {
    push @bad, "$id is documented but no longer logged" unless exists $code{$id};
}
if (@bad) { print "log ids: code and docs/mod_micropay.md disagree:\n"; print "  $_\n" for @bad; exit 1; }
printf "log ids: %d ids logged, each documented at its level\n", scalar(keys %code);
' "$doc" "$top"/mod_micropay/*.c
