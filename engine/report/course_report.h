// The course report: one self-contained HTML page of an enrollment's course
// for clinicians (`ipsrt report`, ReportService.RenderReport and
// `ipsrt simulate --report`).
//
// The page fetches nothing (a Content-Security-Policy forbids it), runs no
// script, draws its charts as inline SVG, and prints on A4. Every chart is
// an SVG with role="img", a <title>, a caption and a data table as its text
// alternative. Each plotted point carries data-point="<series>" so tests
// and tools can count them: "phq9", "gad7", "asrm", "srm" (7-day SRM score
// after each diary day), "srm-<activity>" (a day's time of an anchor
// activity), "session" and "cadence". Free text (references, notes, goal,
// plan) is HTML-escaped.
//
// Example:
//   CourseReportInput input{.workflow = &w, .enrollment = e, ...};
//   std::string html = RenderCourseReport(input);
#ifndef IPSRT_REPORT_COURSE_REPORT_H_
#define IPSRT_REPORT_COURSE_REPORT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ipsrt/v1/enrollment.pb.h"
#include "model/workflow.h"

namespace ipsrt::report {

struct CourseReportInput {
  // The enrollment's template (thresholds, stage titles); must not be null.
  const WorkflowTemplate* workflow = nullptr;
  v1::Enrollment enrollment;
  // The whole event log, in sequence order, with payloads and outcomes.
  std::vector<v1::Event> events;
  // Open tasks (alerts included), as ListTasks gives them.
  std::vector<v1::Task> open_tasks;
  // The patient's zone, for dates and diary times.
  absl::TimeZone zone;
  // The report's "as of" time: the end of the time axis.
  absl::Time as_of;
  // A note under the title, e.g. "Simulated course: scenario x.yaml".
  std::string note;
  // The template's stage graph as SVG (from `dot`), embedded as is; empty
  // leaves the section out. Must come from a trusted renderer.
  std::string graph_svg;
};

// RenderCourseReport returns the complete HTML document.
std::string RenderCourseReport(const CourseReportInput& input);

// HtmlEscape escapes &, <, >, " and ' for text and attribute values.
std::string HtmlEscape(absl::string_view text);

}  // namespace ipsrt::report

#endif  // IPSRT_REPORT_COURSE_REPORT_H_
