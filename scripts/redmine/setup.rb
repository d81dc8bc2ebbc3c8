# Run by scripts/redmine-server.sh with `rails runner` inside a fresh test instance: what the
# integration tests rely on. Not for production use.
#
# - the REST API enabled;
# - an issue custom field `SentinelaFingerprint` (text, "Used as a filter", for all projects
#   and trackers): the dedup key;
# - a private project `security` with issue tracking;
# - a non-admin user `sentinela` with the Manager role in it (add and edit issues, add notes,
#   set notes private), whose API key goes to ARGV[0];
# - a line per fact for the script's log.
Setting.rest_api_enabled = '1'
field = IssueCustomField.find_or_create_by!(name: 'SentinelaFingerprint') do |f|
  f.field_format = 'string'
  f.is_filter = true
  f.is_for_all = true
  f.searchable = false
  f.trackers = Tracker.all
end
project = Project.find_by(identifier: 'security') ||
  Project.create!(name: 'Security', identifier: 'security', is_public: false,
                  tracker_ids: Tracker.pluck(:id))
project.enabled_module_names = %w[issue_tracking]
project.save!
user = User.find_by(login: 'sentinela') || User.new(firstname: 'Sentinela', lastname: 'Bot',
                                                  mail: 'sentinela@example.com').tap do |u|
  u.login = 'sentinela'
  u.password = SecureRandom.hex(16)
  u.status = User::STATUS_ACTIVE
  u.save!
end
unless Member.exists?(user_id: user.id, project_id: project.id)
  Member.create!(principal: user, project: project, roles: [Role.find_by!(name: 'Manager')])
end
File.write(ARGV[0], user.api_key + "\n")
puts "custom field #{field.id}, project #{project.identifier}, user #{user.login}"
puts 'statuses ' + IssueStatus.all.map { |s| "#{s.id}:#{s.name}:#{s.is_closed}" }.join(' ')
puts 'priorities ' + IssuePriority.all.map { |p| "#{p.id}:#{p.name}" }.join(' ')
